"""switchctl against a real journal written by a real daemon: status, messages, show, verify, validate, help."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from switchd.config import load_config
from switchd.ctl.main import build_parser
from tests.builders import SAMPLES, Tx, pacs008
from tests.conftest import DaemonProcess, switchctl

XML = {"Content-Type": "application/xml", "Authorization": "Bearer demo-bank-a"}


def _post(dp: DaemonProcess, body: bytes) -> httpx.Response:
    return httpx.post(f"{dp.base_url}/v1/messages", content=body, headers=XML, timeout=30)


def test_status_messages_and_show(daemon_process: DaemonProcess) -> None:
    cfg = daemon_process.config_path
    ok = _post(daemon_process, pacs008(msg_id="CTL-1", txs=[Tx(end_to_end_id="E2E-CTL", uetr=None)])).json()
    bad = _post(daemon_process, pacs008(msg_id="CTL-2", nb_of_txs="5")).json()

    status = switchctl(cfg, "--json", "status")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["daemon"]["ready"] is True
    assert data["daemon"]["running"] is True
    # Ready before the intake worker is warm (the daemon examines meanwhile): status says which, once it is.
    deadline = time.monotonic() + 30
    while not (data["intake"] or {}).get("warm"):
        assert time.monotonic() < deadline, data["intake"]
        time.sleep(0.2)
        data = json.loads(switchctl(cfg, "--json", "status").stdout)
    assert data["intake"] == {"workers": 1, "warm": True}
    assert "intake   1 worker process(es)" in switchctl(cfg, "status").stdout
    assert "switchd_intake_workers_warm 1.0" in httpx.get(f"{daemon_process.base_url}/metrics", timeout=30).text

    listing = switchctl(cfg, "messages", "--state", "rejected")
    assert listing.returncode == 0
    assert bad["id"] in listing.stdout and ok["id"] not in listing.stdout

    as_json = json.loads(switchctl(cfg, "--json", "messages", "--type", "pacs.008*").stdout)
    assert {m["id"] for m in as_json} == {ok["id"], bad["id"]}

    for key in (ok["id"], "CTL-1", "E2E-CTL"):
        shown = switchctl(cfg, "show", key)
        assert shown.returncode == 0, shown.stderr
        assert ok["id"] in shown.stdout
        for event in ("received", "validated", "accepted"):
            assert event in shown.stdout

    shown_bad = switchctl(cfg, "show", bad["id"])
    assert "rejected" in shown_bad.stdout and "reported" in shown_bad.stdout
    raw = switchctl(cfg, "show", "--raw", ok["id"])
    assert raw.stdout.encode() == pacs008(msg_id="CTL-1", txs=[Tx(end_to_end_id="E2E-CTL", uetr=None)])

    assert switchctl(cfg, "show", "NO-SUCH-THING").returncode == 1


def test_status_says_when_the_daemon_is_down(config_file: Path) -> None:
    r = switchctl(config_file, "status")
    assert r.returncode in (2, 3)


def test_journal_verify_detects_and_names_tampering(daemon_process: DaemonProcess) -> None:
    cfg = daemon_process.config_path
    for i in range(3):
        assert _post(daemon_process, pacs008(msg_id=f"T-{i}")).status_code == 202
    clean = switchctl(cfg, "journal", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "journal ok" in clean.stdout

    db = sqlite3.connect(load_config(cfg).journal_path)
    tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert "events" in tables
    seq, detail = db.execute("select seq, detail from events order by seq limit 1 offset 4").fetchone()
    db.execute("update events set detail = ? where seq = ?", (detail.replace("}", ',"x":1}', 1), seq))
    db.commit()
    db.close()
    tampered = switchctl(cfg, "journal", "verify")
    assert tampered.returncode == 1
    assert "TAMPERED" in tampered.stdout
    assert str(seq) in tampered.stdout


def test_validate_offline_reports_every_error_with_line_and_path(tmp_path: Path, config_file: Path) -> None:
    good = SAMPLES / "pacs.008.001.08-valid.xml"
    bad = tmp_path / "bad.xml"
    bad.write_bytes(
        pacs008(msg_id="V-1", pretty=True)
        .replace(b"<NbOfTxs>1</NbOfTxs>", b"<NbOfTxs>x</NbOfTxs>")
        .replace(b"<SttlmMtd>CLRG</SttlmMtd>", b"<SttlmMtd>NOPE</SttlmMtd>")
    )
    ok = switchctl(config_file, "validate", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid pacs.008.001.08" in ok.stdout
    r = switchctl(config_file, "--json", "validate", str(good), str(bad))
    assert r.returncode == 1
    results = {Path(x["file"]).name: x for x in json.loads(r.stdout)}
    assert results[good.name]["valid"] is True
    errors = results["bad.xml"]["errors"]
    assert {e["path"] for e in errors} >= {
        "/Document/FIToFICstmrCdtTrf/GrpHdr/NbOfTxs",
        "/Document/FIToFICstmrCdtTrf/GrpHdr/SttlmInf/SttlmMtd",
    }
    assert all(e["line"] > 1 for e in errors)


@pytest.mark.parametrize(
    "command",
    [["status"], ["messages"], ["show"], ["journal"], ["journal", "verify"], ["validate"]],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: switchctl")
    assert len(out.splitlines()) > 3


def test_readme_documents_every_command() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for command in (
        "switchctl status",
        "switchctl messages",
        "switchctl show",
        "switchctl journal verify",
        "switchctl validate",
    ):
        assert command in readme, command
