"""The running daemon (in process, real SoftHSM token, directory connector, SQLite journal) refuses a SIGHUP reload
whose active key is configured but not on the token: the old key keeps signing and messages keep leaving."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from hsm.xmldsig import verify_envelope
from tests.builders import pacs008
from tests.hsm.conftest import DevToken, exported_cert
from tests.hsm.test_daemon_signing import (
    WAIT_S,
    XML,
    delivered_file,
    hsm_table,
    signature_method,
    start,
)

GHOST_KEY = """
[[hsm.keys]]
label = "sig-ghost"
algorithm = "ec-p256"
"""


async def test_reload_to_a_key_missing_from_the_token_is_refused_and_the_old_key_keeps_signing(
    dev_token: DevToken, tmp_path: Path, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switchd")
    rd = await start(tmp_path, nursery, hsm_table(dev_token.settings))
    outbox_dir = tmp_path / "to-bank"
    try:
        # The operator adds a key to [[hsm.keys]] that was never made on the token and makes it active, and renames
        # the route (which shows when the reload has been applied).
        text = rd.config_path.read_text()
        assert 'active = "sig-rsa"' in text and 'name = "all"' in text
        text = text.replace('active = "sig-rsa"', 'active = "sig-ghost"').replace('name = "all"', 'name = "all-v2"')
        rd.config_path.write_text(text + GHOST_KEY)
        rd.daemon.request_reload()
        with trio.fail_after(WAIT_S):
            while rd.daemon.config.routes.routes[0].name != "all-v2":
                await trio.sleep(0.05)
        # The rest of the reload applied; [hsm] kept as running, and said so.
        hsm = rd.daemon.config.hsm
        assert hsm is not None and hsm.active == "sig-rsa"
        assert rd.daemon.signing is not None and rd.daemon.signing.settings.active == "sig-rsa"
        assert "reload of [hsm] refused" in caplog.text and "sig-ghost" in caplog.text
        assert "signing key is now 'sig-ghost'" not in caplog.text

        async with rd.client() as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="GHOST-1"), headers=XML)
            assert r.status_code == 202, r.text
        sent = await delivered_file(outbox_dir, "GHOST-1")  # delivered, not waiting for ever
        assert signature_method(sent) == "rsa-sha256"
        verify_envelope(sent, [exported_cert(rd.config_path, "sig-rsa")])
        async with rd.client(None) as anon:
            assert (await anon.get("/readyz")).status_code == 200

        # A key that is on the token is still a reload away.
        text = rd.config_path.read_text().replace('active = "sig-ghost"', 'active = "sig-ec"')
        rd.config_path.write_text(text.replace(GHOST_KEY, ""))
        rd.daemon.request_reload()
        signing = rd.daemon.signing
        with trio.fail_after(WAIT_S):
            while signing.settings.active != "sig-ec":
                await trio.sleep(0.05)
        # The line whose absence was checked above is the one a rotation writes.
        assert "signing key is now 'sig-ec'" in caplog.text
        async with rd.client() as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="GHOST-2"), headers=XML)
            assert r.status_code == 202, r.text
        assert signature_method(await delivered_file(outbox_dir, "GHOST-2")) == "ecdsa-sha256"
    finally:
        await rd.stop()


async def test_a_wrong_pin_is_named_by_readiness_and_fixing_the_file_lets_messages_go(
    dev_token: DevToken, tmp_path: Path, nursery: trio.Nursery
) -> None:
    pin = tmp_path / "user.pin"
    pin.write_text("wrong-pin-4242\n")
    rd = await start(tmp_path, nursery, hsm_table(dev_token.settings, pin_file=str(pin)))
    try:
        async with rd.client(None) as anon:
            r = await anon.get("/readyz")
            assert r.status_code == 503
            problem = r.json()["problems"]["hsm"]
            assert "rejected the PIN" in problem and "until the PIN file changes" in problem
            assert "wrong-pin-4242" not in r.text
        async with rd.client() as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="PIN-1"), headers=XML)
            assert r.status_code == 202, r.text
        assert dev_token.settings.pin_file is not None
        pin.write_text(Path(dev_token.settings.pin_file).read_text())
        sent = await delivered_file(tmp_path / "to-bank", "PIN-1")
        verify_envelope(sent, [exported_cert(rd.config_path, "sig-rsa")])
    finally:
        await rd.stop()
