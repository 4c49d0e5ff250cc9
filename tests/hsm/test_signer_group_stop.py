"""The real `switchd run` process with signing (SoftHSM dev token) stops cleanly when SIGTERM reaches its whole
process group, as `systemctl stop` sends it: the signer processes leave stopping to the daemon."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import trio

from tests.builders import pacs008
from tests.conftest import start_daemon_process, write_config
from tests.hsm.conftest import DevToken, signers_of
from tests.hsm.test_daemon_signing import XML, connector_and_signer, delivered_file, hsm_table


async def test_sigterm_to_the_process_group_of_a_signing_daemon_stops_cleanly(
    dev_token: DevToken, tmp_path: Path
) -> None:
    outbox_dir = tmp_path / "to-bank"
    outbox_dir.mkdir()
    hsm = hsm_table(dev_token.settings).replace("workers = 1", "workers = 2")
    config = write_config(tmp_path, extra=connector_and_signer(outbox_dir) + hsm)
    dp = start_daemon_process(config, tmp_path / "switchd.log", timeout=60, new_session=True)
    try:
        async with httpx.AsyncClient(base_url=dp.base_url, timeout=30) as client:
            r = await client.post(
                "/v1/messages",
                content=pacs008(msg_id="GROUP-SIGNED"),
                headers={**XML, "Authorization": "Bearer demo-bank-a"},
            )
            assert r.status_code == 202, r.text
        await delivered_file(outbox_dir, "GROUP-SIGNED")  # the signers have worked
        with trio.fail_after(60):  # and both are up (the second may still be warming: the daemon does not wait)
            while len(signers_of(dp.proc.pid)) < 2:
                await trio.sleep(0.05)
        os.killpg(dp.proc.pid, signal.SIGTERM)
        code = await trio.to_thread.run_sync(dp.wait)
    finally:
        if dp.proc.poll() is None:
            dp.proc.kill()
    log = dp.log()
    assert code == 0, log
    assert "stopped; journal closed" in log
    assert "Traceback" not in log and "BrokenWorker" not in log and "uncleanly" not in log, log
