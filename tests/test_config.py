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
        # Values the daemon cannot run with: each of these used to pass here and break the daemon later.
        ("[http]\nrequest_timeout_s = 0\n", "http.request_timeout_s", "greater than 0"),
        ("[http]\nrequest_timeout_s = nan\n", "http.request_timeout_s", "greater than 0"),
        ("[http]\nmax_connections = 0\n", "http.max_connections", "at least 1"),
        ("[http]\nmax_connections = -1\n", "http.max_connections", "at least 1"),
        ("[limits]\ndrain_timeout_s = -5\n", "limits.drain_timeout_s", "at least 0"),
        ("[limits]\ndrain_timeout_s = inf\n", "limits.drain_timeout_s", "at least 0"),
        (
            '[[connectors]]\nname = "c"\nkind = "http"\nbackoff_max_s = nan\n',
            "connectors[0].backoff_max_s",
            "greater than 0",
        ),
        ('[[routes]]\nname = "r"\nreject = "RR04"\ndeadline_s = nan\n', "routes[0].deadline_s", "greater than 0"),
        (
            '[[routes]]\nname = "r"\nreject = "RR04"\ncurrencies = ["EUR", "EURO"]\n',
            "routes[0].currencies[1]",
            "'EURO' is not an ISO 4217 currency code",
        ),
        ('[[routes]]\nname = "r"\nreject = "RR04"\ncurrencies = ["eur"]\n', "routes[0].currencies[0]", "ISO 4217"),
        ('[[routes]]\nname = "r"\nreject = "RR04"\ncurrencies = []\n', "routes[0].currencies", "matches no"),
        ('[[routes]]\nname = "r"\nreject = "RR04"\nmin_amount = nan\n', "routes[0].min_amount", "not an amount"),
        ('[[routes]]\nname = "r"\nreject = "RR04"\nmax_amount = "-1"\n', "routes[0].max_amount", "not an amount"),
        (
            '[[routes]]\nname = "r"\nreject = "RR04"\nmin_amount = 100\nmax_amount = 10\n',
            "routes[0].min_amount",
            "greater than max_amount",
        ),
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


TOKEN = "c2f1bcf461c5f642545991f11db2ca335ee1da5b7ded58dfae51af7ae45d452e"
CERT = "ab" * 32


@pytest.mark.parametrize(
    "second, key",
    [
        (f'token_sha256 = "{TOKEN}"', "participants[1].token_sha256"),
        (f'cert_sha256 = "{CERT}"', "participants[1].cert_sha256"),
    ],
)
def test_two_participants_cannot_share_a_credential(tmp_path: Path, second: str, key: str) -> None:
    # Authentication takes the first match: the second participant would be logged in as the first.
    path = tmp_path / "dup.toml"
    path.write_text(
        f'[[participants]]\nname = "a"\nbics = ["AAAAUS33"]\ntoken_sha256 = "{TOKEN}"\ncert_sha256 = "{CERT}"\n'
        f'[[participants]]\nname = "b"\nbics = ["BBBBDEFF"]\n{second}\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert (exc.value.file, exc.value.key) == (str(path), key)
    assert "participant 'a' has the same" in exc.value.reason


def test_limits_at_their_edges_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "edges.toml"
    path.write_text(
        "[http]\nrequest_timeout_s = 0.5\nmax_connections = 1\n[limits]\ndrain_timeout_s = 0\n"
        '[[routes]]\nname = "r"\nreject = "RR04"\ncurrencies = ["EUR", "JPY", "XAU"]\nmin_amount = 5\nmax_amount = 5\n'
    )
    cfg = load_config(path)
    assert (cfg.http.request_timeout_s, cfg.http.max_connections, cfg.drain_timeout_s) == (0.5, 1, 0)
    assert cfg.routes.routes[0].currencies == frozenset({"EUR", "JPY", "XAU"})
