"""Journal write throughput and latency: one transaction per message vs group commit with N concurrent trio tasks.

    .venv/bin/python -m bench.journal_bench [--messages 3000] [--dir DIR] [--tasks 1,8,32,128,512]
        [--work-us 0] [--think-us 0] [--repeat 1] [--no-direct]

Each message is a ~7 KB raw body with 3 events and 3 refs, committed durably (WAL, synchronous=FULL). Figures
depend on the disk's fsync latency: run it on the disk the journal will live on (--dir).

--think-us makes each task pause after each commit, like a client's round trip (trio idles, the GIL is free, the
writer picks up ops at once: the small batches seen in the daemon).
--work-us makes every task burn that much CPU (holding the GIL, as parsing and validating do) before each commit,
as the daemon's intake does: without it the callers cost nothing and batches form more easily than in the daemon.
To compare two versions of the journal on a noisy machine, run this file against each in turn (PYTHONPATH=<tree>)
with --repeat and compare medians.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
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
        tx.flush()  # Tx holds new rows back until the end of the batch (see writes.Tx)
        cur.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (tx.seq, tx.head))
        cur.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def spin(us: float) -> None:
    """Burn CPU in Python (holding the GIL) for `us` microseconds."""
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


async def bench_journal(
    path: Path, n: int, tasks: int, work_us: float = 0.0, think_us: float = 0.0
) -> tuple[float, list[float], Journal]:
    latencies: list[float] = []
    async with open_journal(path) as journal:
        next_i = 0

        async def worker() -> None:
            nonlocal next_i
            while next_i < n:
                i, next_i = next_i, next_i + 1
                rec = record(i)
                if work_us:
                    spin(work_us)
                    await trio.lowlevel.checkpoint()  # let the other callers run, as the daemon's awaits do
                t = time.perf_counter()
                await journal.commit_inbound(rec)
                latencies.append(time.perf_counter() - t)
                if think_us:
                    await trio.sleep(think_us / 1e6)  # the client's round trip: trio idles, the GIL is free

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - started
    return elapsed, latencies, journal


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the journal files (default: a temp dir)")
    parser.add_argument("--tasks", default="1,8,32,128,512", help="comma-separated concurrent task counts")
    parser.add_argument("--work-us", type=float, default=0.0, help="CPU per message in each task before committing")
    parser.add_argument("--think-us", type=float, default=0.0, help="each task's pause after a commit (client RTT)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-direct", action="store_true")
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        for rep in range(args.repeat):
            if not args.no_direct:
                elapsed = bench_direct(base / f"direct-{rep}.sqlite", n)
                print(f"{'direct, 1 txn per message (no thread, no trio)':58s} {n / elapsed:9,.0f} msgs/s", flush=True)
            for tasks in (int(t) for t in args.tasks.split(",")):
                path = base / f"group-{rep}-{tasks}.sqlite"
                elapsed, lat, journal = trio.run(bench_journal, path, n, tasks, args.work_us, args.think_us)
                stats = journal.statistics()
                lat.sort()
                p50 = statistics.median(lat) * 1e3
                p99 = lat[int(len(lat) * 0.99)] * 1e3
                label = f"journal, {tasks:3d} concurrent task(s)"
                print(
                    f"{label:58s} {n / elapsed:9,.0f} msgs/s   {stats.commits:5d} commits,"
                    f" avg batch {stats.ops / stats.commits:6.1f}, largest {stats.largest_batch:3d},"
                    f" p50 {p50:6.2f} ms, p99 {p99:6.2f} ms",
                    flush=True,
                )
                result = Journal.open(path, readonly=True)
                assert result.stats()["messages"] == n
                result.close()
                path.unlink()


if __name__ == "__main__":
    main()
