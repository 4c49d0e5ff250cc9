"""Journal write throughput: one transaction per message vs group commit with N concurrent trio tasks.

    .venv/bin/python -m bench.journal_bench [--messages 3000] [--dir DIR]

Each message is a ~7 KB raw body with 3 events and 3 refs, committed durably (WAL, synchronous=FULL). Figures
depend on the disk's fsync latency: run it on the disk the journal will live on (--dir).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import trio

from switchd.journal import InboundRecord, Journal, open_journal, writes
from switchd.journal.schema import connect_writer, migrate

RAW = b"<Document>" + b"x" * 7000 + b"</Document>"


def record(i: int) -> InboundRecord:
    raw = RAW + str(i).encode()
    sha = hashlib.sha256(raw).hexdigest()
    at = "2025-03-01T10:00:00.000000Z"
    return InboundRecord(
        id=f"M{i:09d}",
        participant="BANKA",
        channel="http",
        channel_ref="127.0.0.1:1",
        received_at=at,
        raw=raw,
        sha256=sha,
        message_type="pacs.008.001.08",
        family="pacs.008",
        msg_id=f"MSG{i}",
        state="accepted",
        http_status=202,
        verdict={"summary": "accepted"},
        refs=(("end_to_end_id", f"E{i}"), ("uetr", f"U{i}"), ("tx_id", f"T{i}")),
        events=(("received", {"sha256": sha, "bytes": len(raw)}), ("validated", {}), ("accepted", {})),
        report=None,
    )


def bench_direct(path: Path, n: int) -> float:
    """No writer thread, no trio: the same SQL, one transaction (one fsync) per message."""
    conn = connect_writer(path)
    migrate(conn, path)
    cur = conn.cursor()
    started = time.perf_counter()
    for i in range(n):
        rec = record(i)
        cur.execute("BEGIN IMMEDIATE")
        seq, head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        tx = writes.Tx(cur, seq, head)
        writes.store_inbound(tx, rec, writes.timed(rec.events, rec.received_at))
        cur.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (tx.seq, tx.head))
        cur.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def bench_journal(path: Path, n: int, tasks: int) -> tuple[float, Journal]:
    async with open_journal(path) as journal:
        next_i = 0

        async def worker() -> None:
            nonlocal next_i
            while next_i < n:
                i, next_i = next_i, next_i + 1
                await journal.commit_inbound(record(i))

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - started
    return elapsed, journal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the journal files (default: a temp dir)")
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        elapsed = bench_direct(base / "direct.sqlite", n)
        print(f"{'direct, 1 txn per message (no thread, no trio)':52s} {n / elapsed:9,.0f} msgs/s")
        for tasks in (1, 8, 32, 128, 512):
            elapsed, journal = trio.run(bench_journal, base / f"group-{tasks}.sqlite", n, tasks)
            stats = journal.statistics()
            label = f"journal, {tasks:3d} concurrent task(s)"
            print(
                f"{label:52s} {n / elapsed:9,.0f} msgs/s   {stats.commits:5d} commits,"
                f" avg batch {stats.ops / stats.commits:6.1f}, largest {stats.largest_batch}"
            )
            result = Journal.open(base / f"group-{tasks}.sqlite", readonly=True)
            assert result.stats()["messages"] == n
            result.close()


if __name__ == "__main__":
    main()
