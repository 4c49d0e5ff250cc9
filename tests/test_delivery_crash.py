"""Exactly-once effect and replay with the real `switchd run` process and a simulated bank that records what it got.

kill -9 while deliveries are in flight, restart: every message that got a 202 reaches the bank, and every copy the
bank got more than once (an attempt whose outcome the dead process never learned) carries AppHdr/PssblDplct.
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from pathlib import Path

import trio

from adapters.local.simbank import read_receipts
from switchd.config import load_config
from switchd.journal import Journal
from tests.conftest import sim_bank, start_daemon_process, switchctl, write_config
from tests.test_daemon_process import _load


def _all_delivered(config: Path, accepted: list[str], timeout: float = 60) -> Journal:
    journal = Journal.open(load_config(config).journal_path, readonly=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [m for m in accepted if any(o.state != "delivered" for o in journal.outbox(m))]
        if not pending:
            return journal
        time.sleep(0.2)
    raise AssertionError(f"{len(pending)} accepted message(s) never delivered, e.g. {pending[:3]}")


async def test_kill_9_during_delivery_loses_nothing_and_marks_possible_duplicates(tmp_path: Path) -> None:
    receipts = tmp_path / "receipts.jsonl"
    config = write_config(tmp_path, extra=sim_bank(receipts, backoff_initial_s=0.05, backoff_max_s=0.2, concurrency=16))
    d = start_daemon_process(config, tmp_path / "run1.log")
    accepted: list[str] = []
    other: list[int] = []
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_load, d.base_url, accepted, other, stop, 16)
            # Kill while the bank is receiving: deliveries are in flight by then.
            with trio.fail_after(60):
                while not receipts.exists() or len(read_receipts(receipts)) < 40:
                    await trio.sleep(0.02)
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(10)
            stop.set()
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
    assert accepted, "no message was accepted before the kill"

    d2 = start_daemon_process(config, tmp_path / "run2.log")
    try:
        journal = await trio.to_thread.run_sync(_all_delivered, config, accepted)
        by_msg_id: dict[str, list[dict[str, object]]] = defaultdict(list)
        for r in read_receipts(receipts):
            by_msg_id[str(r["msg_id"])].append(r)
        for mid in accepted:
            row = journal.get(mid)
            assert row is not None and row.msg_id is not None
            copies = by_msg_id[row.msg_id]
            assert copies, f"{mid} ({row.msg_id}) got a 202 but the bank never received it"
            # The first copy may be unmarked; every later one says it may be a duplicate.
            assert all(c["possible_duplicate"] for c in copies[1:]), f"{row.msg_id} sent twice unmarked: {copies}"
        journal.close()
    finally:
        d2.signal(signal.SIGTERM)
        d2.wait(30)


async def test_replay_by_id_resends_with_the_same_msg_id_marked_and_journaled(tmp_path: Path) -> None:
    receipts = tmp_path / "receipts.jsonl"
    config = write_config(tmp_path, extra=sim_bank(receipts, backoff_initial_s=0.05, backoff_max_s=0.2, concurrency=16))
    d = start_daemon_process(config, tmp_path / "run.log")
    try:
        from tests.builders import Tx, pacs008
        from tests.rawhttp import RawClient

        async with RawClient(d.base_url, "demo-bank-a") as c:
            status, body = await c.post_json("/v1/messages", pacs008(msg_id="RP-1", txs=[Tx(end_to_end_id="E-RP")]))
        assert status == 202
        mid = body["id"]
        await trio.to_thread.run_sync(_all_delivered, config, [mid])

        missing_reason = await trio.to_thread.run_sync(lambda: switchctl(config, "replay", mid))
        assert missing_reason.returncode == 2 and "--reason" in missing_reason.stderr

        dry = await trio.to_thread.run_sync(
            lambda: switchctl(config, "replay", mid, "--dry-run", "--reason", "bank lost it")
        )
        assert dry.returncode == 0, dry.stderr
        assert "would send 1 part(s)" in dry.stdout and "sim" in dry.stdout
        assert len(read_receipts(receipts)) == 1  # a dry run sends nothing

        real = await trio.to_thread.run_sync(
            lambda: switchctl(config, "replay", mid, "--reason", "bank lost it", "--operator", "alice")
        )
        assert real.returncode == 0, real.stderr
        with trio.fail_after(20):
            while len(read_receipts(receipts)) < 2:
                await trio.sleep(0.05)
        first, second = read_receipts(receipts)
        assert first["msg_id"] == second["msg_id"] == "RP-1"
        assert (first["possible_duplicate"], second["possible_duplicate"]) == (False, True)

        shown = await trio.to_thread.run_sync(lambda: switchctl(config, "--json", "show", mid))
        import json

        (msg,) = json.loads(shown.stdout)
        replayed = [e["detail"] for e in msg["events"] if e["kind"] == "replayed"]
        assert replayed and replayed[0]["operator"] == "alice" and replayed[0]["reason"] == "bank lost it"
        kinds = [e["kind"] for e in msg["events"]]
        assert kinds.index("replayed") < len(kinds) - 1 and kinds.count("delivered") == 2
    finally:
        d.signal(signal.SIGTERM)
        d.wait(30)
