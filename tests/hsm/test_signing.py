"""Signing through a real SoftHSM token: dev token set-up, switchctl hsm, the signing service, failures, rotation."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import msgspec
import pytest
import trio
from cryptography.hazmat.primitives import hashes
from pkcs11 import Attribute, ObjectClass

from hsm.errors import HsmUnavailable, SignatureInvalid, SigningError
from hsm.service import SigningService
from hsm.settings import HsmSettings
from hsm.signer import sign_sync
from hsm.token import Token, open_session
from hsm.xmldsig import verify_envelope
from switchd.config import load_config
from switchd.ctl.main import build_parser
from tests.builders import pacs008
from tests.conftest import switchctl
from tests.hsm.conftest import DevToken, exported_cert, signs_once_the_pin_is_right, write_hsm_config
from tests.hsm.tools import signxml_verify

START_TIMEOUT = 60  # spawning workers and logging in: generous, this only bounds a hang


def _envelopes(n: int) -> list[bytes]:
    return [pacs008(msg_id=f"HSM-{i}") for i in range(n)]


def test_init_dev_creates_token_pin_keys_and_certs_under_the_data_dir(dev_token: DevToken) -> None:
    settings = dev_token.settings
    data_dir = load_config(dev_token.config).data_dir
    for created in ("conf", "pin", "token", "key", "cert"):
        assert f"{created} " in dev_token.init_output
    assert "exists" not in dev_token.init_output
    assert settings.softhsm2_conf == str(data_dir / "hsm" / "softhsm2.conf")
    conf_text = Path(settings.softhsm2_conf).read_text()
    assert f"directories.tokendir = {data_dir / 'hsm' / 'tokens'}" in conf_text
    assert settings.pin_file is not None
    assert stat.S_IMODE(os.stat(settings.pin_file).st_mode) == 0o600
    pin = Path(settings.pin_file).read_text().strip()
    assert len(pin) >= 8 and pin not in dev_token.init_output

    again = switchctl(dev_token.config, "hsm", "init-dev")
    assert again.returncode == 0, again.stderr
    assert "exists; nothing to do" in again.stdout
    assert "created" not in again.stdout


def test_keys_are_sensitive_not_extractable_and_certificates_self_signed(dev_token: DevToken) -> None:
    session = open_session(dev_token.settings)
    try:
        for spec in dev_token.settings.keys:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=spec.label)
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.TOKEN] is True
    finally:
        session.close()
    for label in ("sig-rsa", "sig-ec"):
        cert = exported_cert(dev_token.config, label)
        cert.verify_directly_issued_by(cert)  # the token signed its own certificate


def test_switchctl_keys_lists_labels_algorithms_and_the_active_key(dev_token: DevToken) -> None:
    done = switchctl(dev_token.config, "--json", "hsm", "keys")
    assert done.returncode == 0, done.stderr
    keys = {k["label"]: k for k in json.loads(done.stdout)["keys"]}
    assert keys["sig-rsa"]["algorithm"] == "rsa-2048" and keys["sig-rsa"]["active"] is True
    assert keys["sig-ec"]["algorithm"] == "ec-p256" and keys["sig-ec"]["active"] is False
    for k in keys.values():
        assert k["status"] == "ok" and "switchd dev signer" in k["subject"] and k["not_after"] > "2026"
    table = switchctl(dev_token.config, "hsm", "keys")
    assert table.returncode == 0 and "sig-rsa" in table.stdout and "SUBJECT" in table.stdout


@pytest.mark.parametrize("label", ["sig-rsa", "sig-ec"])
def test_token_signature_verifies_with_ours_and_signxml_against_the_exported_cert(
    dev_token: DevToken, label: str
) -> None:
    settings = msgspec.structs.replace(dev_token.settings, active=label)
    (signed,) = sign_sync(settings, [pacs008()])
    assert signed.key_label == label
    cert = exported_cert(dev_token.config, label)
    assert signed.cert_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    verified = verify_envelope(signed.data, [cert])
    assert verified.algorithm == ("rsa-sha256" if label == "sig-rsa" else "ecdsa-sha256")
    signxml_verify(signed.data, cert)
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(signed.data.replace(b"Bob Creditor", b"Bob Creditos"), [cert])
    assert exc.value.reference == "Document"


def test_switchctl_sign_and_verify_files(dev_token: DevToken, tmp_path: Path) -> None:
    src = tmp_path / "m.xml"
    src.write_bytes(pacs008(pretty=True))
    assert switchctl(dev_token.config, "hsm", "sign", str(src)).returncode == 0
    signed = tmp_path / "m.xml.signed"
    ok = switchctl(dev_token.config, "--json", "hsm", "verify", str(signed))
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["valid"] is True
    signed.write_bytes(signed.read_bytes().replace(b"<BizMsgIdr>MSG-1<", b"<BizMsgIdr>MSG-9<"))
    bad = switchctl(dev_token.config, "--json", "hsm", "verify", str(signed))
    assert bad.returncode == 1
    assert json.loads(bad.stdout)[0]["reference"] == "AppHdr"


async def test_service_signs_batches_in_worker_processes_and_verifies(dev_token: DevToken) -> None:
    service = SigningService(dev_token.settings, workers=2, batch_max=8)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT):
            await nursery.start(service.run)
        assert service.ready and set(service.certificates) == {"sig-rsa", "sig-ec"}
        results: dict[int, list[bytes]] = {}

        async def caller(i: int) -> None:
            signed = await service.sign(_envelopes(10))
            assert {s.key_label for s in signed} == {"sig-rsa"}
            results[i] = [s.data for s in signed]

        with trio.fail_after(START_TIMEOUT):
            async with trio.open_nursery() as callers:
                for i in range(5):
                    callers.start_soon(caller, i)
        assert service.statistics().items == 50
        assert service.statistics().batches >= 50 // 8  # batched: never one job per message
        for batch in results.values():
            for i, data in enumerate(batch):
                assert f"<MsgId>HSM-{i}</MsgId>".encode() in data  # order kept within a call
                v = await service.verify(data)
                assert v.cert == service.certificates["sig-rsa"]
        with pytest.raises(SignatureInvalid) as exc:
            await service.verify(results[0][0].replace(b"Alice", b"Alicf"))
        assert exc.value.reference == "Document"
        nursery.cancel_scope.cancel()


async def test_rotation_old_signatures_still_verify(dev_token: DevToken) -> None:
    service = SigningService(dev_token.settings, workers=1)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT):
            await nursery.start(service.run)
            (by_a,) = await service.sign([pacs008(msg_id="ROT-A")])
            service.reload(msgspec.structs.replace(dev_token.settings, active="sig-ec"))
            (by_b,) = await service.sign([pacs008(msg_id="ROT-B")])
            assert (by_a.key_label, by_b.key_label) == ("sig-rsa", "sig-ec")
            assert (await service.verify(by_a.data)).algorithm == "rsa-sha256"
            assert (await service.verify(by_b.data)).algorithm == "ecdsa-sha256"
            # Each verifies only with its own key's certificate.
            with pytest.raises(SignatureInvalid):
                await service.verify(by_a.data, [service.certificates["sig-ec"]])
        nursery.cancel_scope.cancel()


def _broken(dev_token: DevToken, tmp_path: Path, **changes: object) -> HsmSettings:
    return msgspec.structs.replace(dev_token.settings, **changes)


@pytest.mark.parametrize(
    "change, message",
    [
        ("wrong_pin", "rejected the PIN"),
        ("no_token", "no token labelled 'absent-token'"),
        ("no_conf", "no SoftHSM config at"),
        ("no_module", "does not exist"),
        ("no_pin_file", "cannot read the PIN file"),
        ("no_key", "no private key labelled 'missing-key'"),
    ],
)
async def test_unreachable_token_or_wrong_pin_is_a_clear_hsm_unavailable(
    dev_token: DevToken, tmp_path: Path, change: str, message: str
) -> None:
    wrong_pin = tmp_path / "wrong.pin"
    wrong_pin.write_text("not-the-pin-4242\n")
    settings = {
        "wrong_pin": lambda: _broken(dev_token, tmp_path, pin_file=str(wrong_pin)),
        "no_token": lambda: _broken(dev_token, tmp_path, token="absent-token"),
        "no_conf": lambda: _broken(dev_token, tmp_path, softhsm2_conf=str(tmp_path / "none.conf")),
        "no_module": lambda: _broken(dev_token, tmp_path, module=str(tmp_path / "libnothing.so")),
        "no_pin_file": lambda: _broken(dev_token, tmp_path, pin_file=str(tmp_path / "absent.pin")),
        "no_key": lambda: _broken(
            dev_token,
            tmp_path,
            keys=(*dev_token.settings.keys, msgspec.structs.replace(dev_token.settings.keys[0], label="missing-key")),
            active="missing-key",
        ),
    }[change]()
    service = SigningService(settings, workers=1)  # fresh worker processes: not logged in yet
    async with trio.open_nursery() as nursery:
        # nursery.start raises HsmUnavailable itself (not wrapped in an ExceptionGroup) in the starting task
        with pytest.raises(HsmUnavailable, match=message) as exc, trio.fail_after(START_TIMEOUT):
            await nursery.start(service.run)
    assert not service.ready
    assert "not-the-pin-4242" not in str(exc.value)


def test_switchctl_reports_a_wrong_pin(dev_token: DevToken, tmp_path: Path) -> None:
    wrong_pin = tmp_path / "wrong.pin"
    wrong_pin.write_text("not-the-pin-4242\n")
    data_dir = load_config(dev_token.config).data_dir
    config = write_hsm_config(tmp_path / "cfg", extra=f'pin_file = "{wrong_pin}"')
    text = config.read_text().replace('data_dir = "var"', f'data_dir = "{data_dir}"')
    config.write_text(text)
    done = switchctl(config, "hsm", "keys")
    assert done.returncode == 1
    assert "hsm unavailable: the token 'switchd-test' rejected the PIN" in done.stderr
    assert "not-the-pin-4242" not in done.stdout + done.stderr


async def test_signing_resumes_once_the_hsm_is_back(dev_token: DevToken, tmp_path: Path) -> None:
    """Started while the PIN cannot be read: not ready, sign raises HsmUnavailable; once it is readable, it signs."""
    pin_file = tmp_path / "later.pin"
    settings = msgspec.structs.replace(dev_token.settings, pin_file=str(pin_file))
    service = SigningService(settings, workers=1)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT):
            await nursery.start(
                lambda task_status: service.run(require_ready=False, retry_s=0.2, task_status=task_status)
            )
        assert not service.ready and service.last_error and "PIN file" in service.last_error
        with pytest.raises(HsmUnavailable):
            await service.sign([pacs008()])
        await signs_once_the_pin_is_right(service, pin_file, dev_token, "AFTER")
        nursery.cancel_scope.cancel()


def test_in_process_token_finds_keys_by_label(dev_token: DevToken) -> None:
    token = Token.open(dev_token.settings)
    try:
        assert token.key("sig-ec").signing.kind == "ec"
        assert token.key("sig-rsa").signing.kind == "rsa"
        with pytest.raises(HsmUnavailable, match="not configured"):
            token.key("nope")
    finally:
        token.close()


@pytest.mark.parametrize("action", ["init-dev", "keys", "cert", "sign", "verify"])
def test_every_hsm_command_has_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["hsm", action, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: switchctl hsm")


@pytest.mark.parametrize(
    "extra, key, reason",
    [
        ('pin_env = "X"\npin_file = "p"', "hsm.pin_env", "not both"),
        ('active = "other"', "hsm.active", "not the label"),
        ("workers = 0", "hsm.workers", "between 1 and 64"),
        ("pin = 1234", "hsm.pin", "unknown key"),
    ],
)
def test_bad_hsm_config_names_file_key_and_reason(tmp_path: Path, extra: str, key: str, reason: str) -> None:
    from switchd.errors import ConfigError

    text = write_hsm_config(tmp_path, extra=extra).read_text()
    if extra.startswith("active"):
        text = text.replace('active = "sig-rsa"\n', "")
    path = tmp_path / "switchd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert (exc.value.file, exc.value.key) == (str(path), key)
    assert reason in exc.value.reason


def test_hsm_config_paths_resolve_against_the_config_dir(tmp_path: Path) -> None:
    path = write_hsm_config(tmp_path, extra='pin_file = "secrets/pin"')
    cfg = load_config(path)
    assert cfg.hsm is not None
    assert cfg.hsm.pin_file == str(tmp_path / "secrets" / "pin")
    assert cfg.hsm.softhsm2_conf == str(tmp_path / "var" / "hsm" / "softhsm2.conf")
    assert cfg.hsm.active == "sig-rsa"


async def test_an_envelope_that_cannot_be_canonicalised_fails_alone_and_the_hsm_stays_ready(
    dev_token: DevToken,
) -> None:
    """Exclusive C14N refuses a relative namespace URI: that envelope gets SigningError, nobody else is hurt, and
    the service does not take it for an HSM outage (readiness would fail and every message would wait)."""
    bad = pacs008(msg_id="BAD-NS").replace(b"<MsgId>", b'<MsgId xmlns:z="not/absolute">', 1)
    service = SigningService(dev_token.settings, workers=1)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT):
            await nursery.start(service.run)
            with pytest.raises(SigningError, match="cannot sign this envelope"):
                await service.sign([bad])
            assert service.ready and service.last_error is None
            (good,) = await service.sign([pacs008(msg_id="GOOD-NS")])
        verify_envelope(good.data, [service.certificates["sig-rsa"]])
        nursery.cancel_scope.cancel()
