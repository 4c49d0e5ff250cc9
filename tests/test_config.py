"""Config loading: defaults, relative paths, and errors that name the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchd.config import load_config
from switchd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_dev_config_loads_with_its_documented_defaults() -> None:
    cfg = load_config(REPO / "conf" / "switchd.toml")
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8020)
    assert cfg.journal_path == (REPO / "var" / "journal.sqlite")
    assert {p.name for p in cfg.participants} == {"bank-a", "bank-b", "sim-bank"}
    assert [c.name for c in cfg.connectors] == ["sim-bank"]
    assert [r.name for r in cfg.routes.routes][-1] == "default"
    # The answers-only participant cannot log in: it has no token or certificate.
    sim = cfg.participant("sim-bank")
    assert sim is not None and sim.token_sha256 is None and sim.cert_sha256 is None
    bank_a = cfg.participant_by_token("demo-bank-a")
    assert bank_a is not None and bank_a.bics == frozenset({"AAAAUS33XXX"})
    assert cfg.participant_by_token("demo-bank-A") is None
    assert cfg.intake_workers >= 1


@pytest.mark.parametrize(
    "text, key, reason",
    [
        ('[http]\nlisten = "nohost"\n', "http.listen", "HOST:PORT"),
        ('[[routes]]\nname = "r"\n', "routes[0]", "exactly one of connector or reject"),
        ('[[routes]]\nname = "r"\nconnector = "nowhere"\n', "routes[0].connector", "no connector named"),
        ('[[routes]]\nname = "r"\nreject = "no"\n', "routes[0].reject", "not an ISO reason code"),
        ('[[connectors]]\nname = "c"\nkind = "fax"\n', "connectors[0].kind", "expected one of"),
        ('[[connectors]]\nname = "c"\nkind = "http"\nmax_attempts = 0\n', "connectors[0].max_attempts", "at least 1"),
        ("[http]\nmax_body_bytes = 10\n", "http.max_body_bytes", "at least 1024"),
        ('[http]\nmax_body_bytes = "big"\n', "http.max_body_bytes", "Expected `int`"),
        ('[http]\ntls_cert = "c.pem"\n', "http.tls_cert", "go together"),
        ("[workers]\nintake = 99\n", "workers.intake", "between 0 and 64"),
        ("[paths]\nnope = 1\n", "paths.nope", "unknown key"),
        ('[[participants]]\nname = "x"\nbics = ["AAAAUS33"]\n', "participants[0]", "token_sha256 or cert_sha256"),
        (
            '[[participants]]\nname = "x"\nbics = []\ntoken_sha256 = "' + "a" * 64 + '"\n',
            "participants[0].bics",
            "at least one",
        ),
        (
            '[[participants]]\nname = "x"\nbics = ["AAAAUS33"]\ntoken_sha256 = "secret"\n',
            "participants[0].token_sha256",
            "SHA-256",
        ),
        ("this is = = not toml", "-", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.file == str(path)
    assert exc.value.key == key
    assert reason in exc.value.reason


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
