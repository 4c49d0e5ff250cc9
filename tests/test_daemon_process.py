"""The real `switchd run` process: drain on SIGTERM, kill -9 under load loses no 202, config errors, start-up."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import h11
import httpx
import trio

from switchd.config import load_config
from switchd.journal import Journal
from tests.builders import Tx, pacs008
from tests.conftest import SWITCHD, DaemonProcess, start_daemon_process, write_config
from tests.rawhttp import RawClient

XML = {"Content-Type": "application/xml", "Authorization": "Bearer demo-bank-a"}


async def _load(base_url: str, accepted: list[str], other: list[int], stop: trio.Event, clients: int = 32) -> None:
    """Post distinct valid messages from `clients` concurrent tasks until `stop` or the server goes away."""

    async def client(n: int) -> None:
        i = 0
        try:
            async with RawClient(base_url, "demo-bank-a") as c:
                while not stop.is_set():
                    i += 1
                    msg = pacs008(msg_id=f"L{n}-{i}", txs=[Tx(end_to_end_id=f"E{n}-{i}")])
                    status, body = await c.post_json("/v1/messages", msg)
                    if status == 202:
                        accepted.append(body["id"])
                    else:
                        other.append(status)
        except (OSError, trio.BrokenResourceError, h11.ProtocolError):
            return  # the daemon died or stopped: the request in flight has no answer, so it promised nothing

    async with trio.open_nursery() as nursery:
        for n in range(clients):
            nursery.start_soon(client, n)


def _journal_ids(config_path: Path, ids: list[str]) -> list[str]:
    journal = Journal.open(load_config(config_path).journal_path, readonly=True)
    return [i for i in ids if journal.get(i) is None]


async def test_kill_9_under_load_loses_no_accepted_message(config_file: Path, tmp_path: Path) -> None:
    dp = start_daemon_process(config_file, tmp_path / "d1.log")
    accepted: list[str] = []
    other: list[int] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_load, dp.base_url, accepted, other, stop)
        await trio.sleep(2.0)
        dp.proc.send_signal(signal.SIGKILL)  # no drain, no journal close: a crash
        await trio.to_thread.run_sync(dp.wait)
        stop.set()
    assert len(accepted) > 50, f"load too small to mean anything: {len(accepted)} accepted, others {other[:5]}"
    assert set(other) <= {503}, other[:10]

    # restart on the same journal: it opens, and every 202 is there
    dp2 = start_daemon_process(config_file, tmp_path / "d2.log")
    try:
        missing = _journal_ids(config_file, accepted)
        assert missing == [], f"{len(missing)} of {len(accepted)} accepted messages lost"
        journal = Journal.open(load_config(config_file).journal_path, readonly=True)
        assert journal.verify().ok
        async with httpx.AsyncClient(base_url=dp2.base_url) as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="AFTER-CRASH"), headers=XML)
            assert r.status_code == 202
    finally:
        dp2.signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(dp2.wait) == 0


async def test_sigterm_drains_in_flight_work_and_exits_cleanly(daemon_process: DaemonProcess) -> None:
    accepted: list[str] = []
    other: list[int] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_load, daemon_process.base_url, accepted, other, stop, 16)
        await trio.sleep(1.0)
        daemon_process.signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(daemon_process.wait)
        stop.set()
    assert code == 0, daemon_process.log()
    assert set(other) <= {503}, other[:10]
    assert accepted
    assert _journal_ids(daemon_process.config_path, accepted) == []
    log = daemon_process.log()
    assert "stopping: intake closed" in log
    assert "stopped; journal closed" in log


async def test_sigterm_to_the_whole_process_group_stops_cleanly(config_file: Path, tmp_path: Path) -> None:
    """`systemctl stop` without KillMode=mixed, `timeout` and Ctrl-C signal every process of the group. The intake
    workers used to die of it: a message being examined got 500, and the pool's close failed, so the daemon
    exited 1 with a traceback instead of draining. Only the daemon may decide when its workers stop."""
    dp = start_daemon_process(config_file, tmp_path / "switchd.log", new_session=True)
    try:
        async with httpx.AsyncClient(base_url=dp.base_url, headers=XML) as client:
            first = await client.post("/v1/messages", content=pacs008(msg_id="GROUP-1"))
            assert first.status_code == 202, first.text
        os.killpg(dp.proc.pid, signal.SIGTERM)
        code = await trio.to_thread.run_sync(dp.wait)
    finally:
        if dp.proc.poll() is None:
            dp.proc.kill()
    assert code == 0, dp.log()
    assert "stopped; journal closed" in dp.log()
    assert "Traceback" not in dp.log()


async def test_sighup_reloads_participants(config_file: Path, tmp_path: Path) -> None:
    dp = start_daemon_process(config_file, tmp_path / "d.log")
    try:
        async with httpx.AsyncClient(base_url=dp.base_url) as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="H-1"), headers=XML)
            assert r.status_code == 202
            # rotate bank-a's token in the config and reload: the old token stops working, the daemon keeps running
            old_hash = "c2f1bcf461c5f642545991f11db2ca335ee1da5b7ded58dfae51af7ae45d452e"
            text = config_file.read_text()
            assert old_hash in text
            config_file.write_text(text.replace(old_hash, "0" * 64))
            dp.signal(signal.SIGHUP)
            for _ in range(100):
                await trio.sleep(0.05)
                if "reloaded" in dp.log():
                    break
            assert "reloaded" in dp.log(), dp.log()
            r = await c.post("/v1/messages", content=pacs008(msg_id="H-2"), headers=XML)
            assert r.status_code == 401
    finally:
        dp.signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(dp.wait) == 0


def test_config_error_names_file_key_and_reason(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('listen = "127.0.0.1:0"', 'lisen = "127.0.0.1:0"'))
    r = subprocess.run([str(SWITCHD), "run", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert str(path) in r.stderr
    assert "http.lisen" in r.stderr
    assert "unknown key" in r.stderr


def test_bad_bic_in_config_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('bics = ["BBBBDEFFXXX"]', 'bics = ["not-a-bic"]'))
    r = subprocess.run([str(SWITCHD), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "participants[1].bics[0]" in r.stderr
