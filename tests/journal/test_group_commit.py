"""Group commit: many trio tasks share transactions, one bad op fails alone, close drains, failures are contained."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from switchd.errors import JournalError
from switchd.journal import Conflict, Idempotent, InboundRecord, Journal, Stored, open_journal

from .factory import make_record


async def test_200_concurrent_commits_all_land_in_shared_transactions(journal: Journal) -> None:
    results: dict[str, object] = {}

    async def submit(i: int) -> None:
        results[f"M{i:03d}"] = await journal.commit_inbound(make_record(f"M{i:03d}", msg_id=f"MSG-{i}"))

    verified: list[bool] = []

    async def read_meanwhile() -> None:
        # Readers on their own connections in worker threads, beside the writer; verify sees one snapshot, so a
        # chain head moving under it is never taken for tampering.
        for _ in range(10):
            await trio.to_thread.run_sync(journal.search)
            verified.append((await trio.to_thread.run_sync(journal.verify)).ok)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_meanwhile)
        for i in range(200):
            nursery.start_soon(submit, i)

    assert results == {mid: Stored(mid) for mid in results} and len(results) == 200
    assert verified == [True] * 10
    stats = journal.statistics()
    assert stats.ops == 200
    assert stats.failed_ops == 0
    assert stats.commits < 200, stats  # batches formed: fewer fsyncs than messages
    assert stats.largest_batch > 1, stats
    assert stats.wakeups == stats.commits  # one hop back into trio per batch, not per message
    assert journal.stats()["messages"] == 200
    assert journal.verify().ok


async def test_one_bad_op_in_a_batch_fails_only_its_awaiter(journal: Journal) -> None:
    await journal.commit_inbound(make_record("TAKEN", msg_id="MSG-TAKEN"))
    before = journal.statistics()
    outcomes: dict[str, object] = {}

    async def submit(mid: str, msg_id: str) -> None:
        try:
            outcomes[mid] = await journal.commit_inbound(make_record(mid, msg_id=msg_id))
        except JournalError as e:
            outcomes[mid] = e

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(submit, f"M{i:02d}", f"MSG-{i}")
            if i == 25:
                nursery.start_soon(submit, "TAKEN", "MSG-NEW")  # the id exists: this insert fails in the batch

    assert isinstance(outcomes.pop("TAKEN"), JournalError)
    assert outcomes == {mid: Stored(mid) for mid in outcomes} and len(outcomes) == 50
    after = journal.statistics()
    assert after.ops - before.ops == 51
    assert after.failed_ops - before.failed_ops == 1
    assert after.commits - before.commits < 51  # so the bad op shared a transaction with good ones
    assert journal.stats()["messages"] == 51
    assert journal.verify().ok  # the failed op's events were rolled back with it: no hole in the chain


async def test_a_failing_transaction_fails_its_whole_batch_and_the_writer_carries_on(
    journal: Journal, db_path: Path
) -> None:
    await journal.commit_inbound(make_record("M0", msg_id="MSG-0"))
    conn = sqlite3.connect(db_path)
    conn.execute("ALTER TABLE chain_head RENAME TO chain_head_away")  # every batch now fails before any op runs
    conn.commit()

    with pytest.raises(JournalError, match="nothing of its"):
        await journal.commit_inbound(make_record("M1", msg_id="MSG-1"))

    conn.execute("ALTER TABLE chain_head_away RENAME TO chain_head")
    conn.commit()
    conn.close()
    assert await journal.commit_inbound(make_record("M2", msg_id="MSG-2")) == Stored("M2")
    assert journal.get("M1") is None
    stats = journal.statistics()
    assert stats.failed_batches == 1 and stats.failed_ops == 1
    assert journal.verify().ok


async def test_aclose_drains_queued_writes_then_refuses_new_ones(db_path: Path) -> None:
    journal = Journal.open(db_path)
    await journal.start()
    results: list[object] = []

    async def submit(i: int) -> None:
        results.append(await journal.commit_inbound(make_record(f"M{i}", msg_id=f"MSG-{i}")))

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(submit, i)
        await trio.testing.wait_all_tasks_blocked()  # all 30 are queued or committing
        await journal.aclose()

    assert len(results) == 30 and all(isinstance(r, Stored) for r in results)
    with pytest.raises(JournalError, match="closing"):
        await journal.commit_inbound(make_record("LATE", msg_id="MSG-LATE"))
    reopened = Journal.open(db_path, readonly=True)
    try:
        assert reopened.stats()["messages"] == 30
    finally:
        reopened.close()


async def test_writes_need_a_started_writer(db_path: Path) -> None:
    journal = Journal.open(db_path)
    try:
        with pytest.raises(JournalError, match="not started"):
            await journal.commit_inbound(make_record("M1"))
        await journal.start()
        with pytest.raises(JournalError, match="already started"):
            await journal.start()
    finally:
        await journal.aclose()
    await journal.aclose()  # idempotent


async def test_batch_cap_bounds_transactions(db_path: Path) -> None:
    async with open_journal(db_path, batch_cap=4) as journal:
        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(journal.commit_inbound, make_record(f"M{i}", msg_id=f"MSG-{i}"))
        stats = journal.statistics()
    assert stats.ops == 40
    assert stats.largest_batch <= 4
    assert stats.commits >= 10


async def test_a_batch_run_again_after_a_failure_keeps_every_outcome(journal: Journal) -> None:
    """The writer runs a batch without savepoints and, when one operation fails, runs it again with one savepoint
    per operation: the others' outcomes (stored, idempotent, conflict, decided against rows of the same batch) and
    their pins must be those of a single run."""
    await journal.commit_inbound(make_record("OLD", msg_id="MSG-OLD", raw=b"<old/>"))
    gate = threading.Event()
    writer = journal._writer  # the test holds the writer thread so that the next operations form one batch
    assert writer is not None
    outcomes: dict[str, object] = {}

    async def submit(key: str, record: InboundRecord) -> None:
        try:
            outcomes[key] = await journal.commit_inbound(record)
        except JournalError as e:
            outcomes[key] = e

    before = journal.statistics()
    async with trio.open_nursery() as nursery:
        entered = threading.Event()

        def hold(tx: object) -> None:
            entered.set()
            gate.wait(10)

        nursery.start_soon(writer.submit, hold)
        await trio.to_thread.run_sync(entered.wait, 10)  # the writer thread is inside the gate's batch
        batch = {
            "new": make_record("A", msg_id="MSG-A", raw=b"<a/>", refs=(("uetr", "u-a"),)),
            "same-batch-resubmission": make_record("A2", msg_id="MSG-A", raw=b"<a/>"),
            "same-batch-conflict": make_record("A3", msg_id="MSG-A", raw=b"<other/>"),
            "old-resubmission": make_record("OLD2", msg_id="MSG-OLD", raw=b"<old/>"),
            "reused-id": make_record("OLD", msg_id="MSG-X"),  # the insert fails: the batch runs again
            "after": make_record("B", msg_id="MSG-B", raw=b"<b/>"),
        }
        for key, record in batch.items():
            nursery.start_soon(submit, key, record)
            await trio.testing.wait_all_tasks_blocked()  # queued in this order
        gate.set()

    after = journal.statistics()
    assert after.commits - before.commits == 2  # the gate's batch, then all six in one transaction
    assert after.failed_ops - before.failed_ops == 1
    assert isinstance(outcomes.pop("reused-id"), JournalError)
    assert outcomes["new"] == Stored("A") and outcomes["after"] == Stored("B")
    resubmission, conflict = outcomes["same-batch-resubmission"], outcomes["same-batch-conflict"]
    assert isinstance(resubmission, Idempotent) and resubmission.original.id == "A"
    assert isinstance(conflict, Conflict) and conflict.original.id == "A"
    old = outcomes["old-resubmission"]
    assert isinstance(old, Idempotent) and old.original.id == "OLD"
    assert [e.kind for e in journal.events("A")] == ["received", "validated", "accepted", "resubmitted"]
    assert journal.get("A2") is None and journal.get("A3") is None
    assert journal.refs("A") == [("uetr", "u-a")]
    assert journal.get("OLD") is not None and journal.get("OLD").msg_id == "MSG-OLD"  # type: ignore[union-attr]
    result = journal.verify()
    assert result.ok, result.problems  # no hole in the chain, every pin as written
