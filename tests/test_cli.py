"""`switchd check-config` builds what start-up builds; `switchd run` reports a start-up failure in one line.

A config that check-config calls ok must not stop the daemon at start-up, and when start-up fails anyway the
operator reads the file, key and reason (exit 2) or the one-line cause (exit 1), never a traceback.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from switchd.cli import main
from tests.conftest import REPO, SWITCHD, sim_bank, write_config


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_check_config_builds_every_kind_of_connector_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connectors = """
[[connectors]]
name = "drop"
kind = "directory"
[connectors.options]
directory = "outbox"

[[connectors]]
name = "bank-c"
kind = "http"
[connectors.options]
url = "https://127.0.0.1:1/iso"
"""
    path = write_config(tmp_path, extra=sim_bank(tmp_path / "var" / "receipts.jsonl") + connectors)
    status, out, err = _check(path, capsys)
    assert (status, err) == (0, "")
    assert "ok (3 participants)" in out
    # It built the connectors without starting them: no data dir, no receipts file, no drop folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["switchd.toml"]


@pytest.mark.parametrize(
    "options, key, reason",
    [
        ('delay_ms = "x"', "connectors[0].options", "invalid literal for int()"),
        ("delay_ms = -5", "connectors[0].options", "negative"),
        ('status = "RJCT"', "connectors[0].options", "not an accepting ISO status code"),
        ('colour = "red"', "connectors[0].options.colour", "unknown option for kind 'simulated'"),
        ("rules = [{ end_to_end_id = 'X*', frobnicate = true }]", "connectors[0].options", "frobnicate"),
    ],
)
def test_check_config_refuses_connector_options_start_up_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: str, key: str, reason: str
) -> None:
    path = write_config(tmp_path, extra=sim_bank(tmp_path / "receipts.jsonl", options=options))
    status, out, err = _check(path, capsys)
    assert status == 2 and out == ""
    assert err.startswith("switchd: config error: ") and err.count("\n") == 1
    assert f"{path.name}: {key}: " in err
    assert reason in err


def test_check_config_refuses_an_http_connector_whose_ca_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = '[[connectors]]\nname = "b"\nkind = "http"\n[connectors.options]\nurl = "https://b.test/"\nca = "no.pem"\n'
    status, _, err = _check(write_config(tmp_path, extra=extra), capsys)
    assert status == 2
    assert "connectors[0].options: " in err and "No such file" in err


def test_check_config_refuses_tls_files_it_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    path = write_config(tmp_path, tls=f'tls_cert = "{tmp_path / "cert.pem"}"\ntls_key = "{tmp_path / "key.pem"}"')
    status, _, err = _check(path, capsys)
    assert status == 2
    assert f"{path}: http.tls_cert: cannot load the certificate or key" in err


def test_check_config_refuses_a_schema_folder_without_schemas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(str(REPO / "schemas" / "iso20022"), str(tmp_path)))
    status, _, err = _check(path, capsys)
    assert status == 2
    assert f"{path}: paths.schemas: " in err and "catalogue.toml" in err


def test_run_stops_on_a_bad_connector_option_with_one_line_and_status_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra=sim_bank(tmp_path / "receipts.jsonl", options='delay_ms = "x"'))
    r = subprocess.run([str(SWITCHD), "run", "--config", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "config error" in line]
    reason = "invalid literal for int() with base 10: 'x'"
    assert errors == [f"switchd: config error: {path}: connectors[0].options: {reason}"]


def test_run_on_a_busy_port_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        path = write_config(tmp_path, port=busy.getsockname()[1])
        r = subprocess.run([str(SWITCHD), "run", "--config", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "cannot start: [Errno 98] Address already in use" in r.stderr
