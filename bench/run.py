"""switchd benchmarks, one run, figures printed side by side with their baselines.

    make bench          (or: .venv/bin/python -m bench.run [--quick] [--repeat N])

1. bare lxml hardened parse + XSD validate of the messages (the stage's own limit), one core
2. the pipeline in-process: parse + validate + rules + durable journal (group commit), one core, 32 tasks
   - its floor: bare lxml plus the CPU SQLite alone spends storing the rows the pipeline journaled for the same
     messages (replayed with executemany, 32 messages a commit, no Python per row): what is left of the
     pipeline's per-message budget at the target for everything else (rules, references, hashes, records)
3. the naive way: xmlschema validation + one SQLite commit per message
4. HTTP end to end: the real daemon process, 32 keep-alive clients from another process (same 2 cores), with
   the CPU each process spent per request (daemon, its intake workers, the load generator)
5. start-up to ready, and peak memory (VmHWM) of the daemon; start-up also with the dev default config
   (conf/switchd.toml: SoftHSM signing and the simulated bank, what `make run` starts)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
import xmlschema
from lxml import etree

from bench.messages import rich_pacs008
from switchd.config import Participant
from switchd.examine import Examiner
from switchd.iso.xml import parse_message
from switchd.journal import open_journal
from switchd.metrics import Metrics
from switchd.pipeline import Inbound, Pipeline
from switchd.schemas import load_schemas
from switchd.workers import InlineExaminer
from tests.builders import Tx, pacs008
from tests.conftest import children, write_config

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas" / "iso20022"
BANK_A = Participant("bank-a", frozenset({"AAAAUS33XXX"}), None, None)
CORE_DAEMON = 0


def messages(n: int, prefix: str) -> list[bytes]:
    return [pacs008(msg_id=f"{prefix}-{i}", txs=[Tx(end_to_end_id=f"{prefix}-E{i}")]) for i in range(n)]


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def bench_bare_lxml(msgs: list[bytes]) -> float:
    catalogue, schemas = load_schemas(SCHEMAS)
    defn = catalogue.get("pacs.008.001.08")
    hdr = catalogue.get("head.001.001.02")
    assert defn is not None and hdr is not None
    t0 = time.perf_counter()
    for raw in msgs:
        pm = parse_message(raw, max_bytes=10_000_000)
        assert schemas.schemas[defn.id].validate(pm.document)
        assert pm.app_hdr is not None and schemas.schemas[hdr.id].validate(pm.app_hdr)
    return len(msgs) / (time.perf_counter() - t0)


def journal_sql_cpu_s(journal_path: Path, n: int) -> float:
    """CPU seconds SQLite alone takes to store again what the pipeline journaled for its `n` messages: the same
    rows into a fresh journal of the same schema, 32 messages a transaction (WAL, synchronous=FULL)."""
    src = sqlite3.connect(journal_path)
    schema = [sql for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    messages = src.execute("SELECT * FROM messages").fetchall()
    assert len(messages) == n, f"{len(messages)} messages journaled, {n} expected"
    per_message: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for table in ("refs", "events"):
        column = [c[1] for c in src.execute(f"PRAGMA table_info({table})")].index("message_id")
        for row in src.execute(f"SELECT * FROM {table}"):
            per_message.setdefault(row[column], {}).setdefault(table, []).append(row)
    src.close()
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(Path(d) / "floor.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")  # as the journal's writer has it
        for sql in schema:
            db.execute(sql)
        width = {t: len(list(db.execute(f"PRAGMA table_info({t})"))) for t in ("messages", "refs", "events")}
        insert = {t: f"INSERT INTO {t} VALUES ({', '.join('?' * w)})" for t, w in width.items()}
        batches = []
        for i in range(0, n, 32):
            chunk = messages[i : i + 32]
            rows = {t: [r for m in chunk for r in per_message.get(m[0], {}).get(t, [])] for t in ("refs", "events")}
            batches.append((chunk, rows))
        cpu = time.process_time()
        for chunk, rows in batches:
            db.execute("BEGIN")
            db.executemany(insert["messages"], chunk)
            db.executemany(insert["refs"], rows["refs"])
            db.executemany(insert["events"], rows["events"])
            db.execute("COMMIT")
        cpu = time.process_time() - cpu
        db.close()
    return cpu


async def _pipeline(msgs: list[bytes], journal_path: Path, concurrency: int) -> float:
    catalogue, schemas = load_schemas(SCHEMAS)
    async with open_journal(journal_path) as journal:
        examiner = Examiner(catalogue, schemas, 10_000_000)
        pipeline = Pipeline(examiner=examiner, verdicts=InlineExaminer(examiner), journal=journal, metrics=Metrics())
        queue = iter(msgs)
        accepted = 0

        async def worker() -> None:
            nonlocal accepted
            for raw in queue:
                out = await pipeline.accept(Inbound(raw, "bench", BANK_A, datetime.now(UTC)))
                accepted += out.http_status == 202

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - t0
    assert accepted == len(msgs), f"only {accepted} of {len(msgs)} accepted"
    return len(msgs) / elapsed


def bench_naive(msgs: list[bytes], db_path: Path) -> float:
    """What a first version would do: xmlschema validation, one INSERT + COMMIT (fsync) per message."""
    schema = xmlschema.XMLSchema(str(SCHEMAS / "pacs.008.001.08.xsd"), allow="local", defuse="always")
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, sha TEXT, raw BLOB, state TEXT)")
    t0 = time.perf_counter()
    for raw in msgs:
        root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
        document = root if etree.QName(root).localname == "Document" else root[1]
        errors = list(schema.iter_errors(document))
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO m (sha, raw, state) VALUES (?, ?, ?)",
            (hashlib.sha256(raw).hexdigest(), raw, "rejected" if errors else "accepted"),
        )
        db.execute("COMMIT")
    rate = len(msgs) / (time.perf_counter() - t0)
    db.close()
    return rate


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_daemon(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, float, float]:
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "switchd"), "run", "--config", str(config)],
            stdout=out,
            stderr=out,
        )
    while True:
        text = log.read_text(errors="replace")
        m = re.search(r"ready in ([0-9.]+)s: http on ([0-9.]+):(\d+)", text)
        if m:
            return proc, f"http://{m.group(2)}:{m.group(3)}", time.perf_counter() - t0, float(m.group(1))
        if proc.poll() is not None or time.perf_counter() - t0 > 30:
            raise RuntimeError(text)
        time.sleep(0.005)


def wait_warm(log: Path, *lines: str) -> None:
    """Until the daemon's log says its intake workers (and `lines`, e.g. the signers') are warm: it is ready
    before they are, and a load measured meanwhile would measure its start-up too."""
    deadline = time.perf_counter() + 60
    for line in ("intake worker process(es) warm", *lines):
        while line not in log.read_text(errors="replace"):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no {line!r} in {log} within 60 s")
            time.sleep(0.05)


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def bench_http(tmp: Path, seconds: float, connections: int, shape: str) -> dict[str, object]:
    config = write_config(tmp)
    proc, url, wall_ready, internal_ready = _start_daemon(config, tmp / "daemon.log")
    try:
        wait_warm(tmp / "daemon.log")  # or the CPU split between the daemon and its workers is wrong
        workers = children(proc.pid)
        cpu_before = {pid: _cpu_s(pid) for pid in [proc.pid, *workers]}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--url",
                url,
                "--connections",
                str(connections),
                "--seconds",
                str(seconds),
                "--shape",
                shape,
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        result: dict[str, object] = json.loads(out.stdout)
        requests = int(result["requests"])  # type: ignore[call-overload]
        result["cpu_us_daemon"] = (_cpu_s(proc.pid) - cpu_before[proc.pid]) / requests * 1e6
        result["cpu_us_workers"] = sum(_cpu_s(w) - cpu_before[w] for w in workers) / requests * 1e6
        result["cpu_us_client"] = float(result["client_cpu_s"]) / requests * 1e6  # type: ignore[arg-type]
        result["daemon_peak_rss_mib"] = _vm_hwm_kib(proc.pid) / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    result["startup_wall_s"] = wall_ready
    result["startup_internal_s"] = internal_ready
    return result


def bench_dev_startup(tmp: Path) -> float:
    """Wall seconds from exec to ready with the dev default config (SoftHSM signing, simulated bank) on a fresh
    data dir and an existing dev token: what `make run` starts, after its first time."""
    text = (REPO / "conf" / "switchd.toml").read_text()
    # Never the repository's own var/ nor the port of a `make run` going on: stop if the dev config moved them.
    for needed in ('data_dir = "../var"', "127.0.0.1:8020"):
        if needed not in text:
            raise RuntimeError(f"conf/switchd.toml no longer says {needed!r}: update bench_dev_startup")
    text = text.replace('data_dir = "../var"', f'data_dir = "{tmp / "var"}"').replace("127.0.0.1:8020", "127.0.0.1:0")
    config = tmp / "switchd.toml"
    config.write_text(text)
    switchctl = str(Path(sys.executable).parent / "switchctl")
    subprocess.run([switchctl, "--config", str(config), "hsm", "init-dev"], check=True, capture_output=True)
    proc, _, wall_ready, _ = _start_daemon(config, tmp / "dev.log")
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return wall_ready


def _shape(shape: str, n: int, prefix: str) -> list[bytes]:
    if shape == "rich":
        return [rich_pacs008(f"{prefix}-{i}", f"{prefix}-E{i}") for i in range(n)]
    return messages(n, prefix)


def _spread(values: list[float], fmt: str = ",.0f") -> str:
    """`median` alone for one run, else `median [min-max]`: the machine is shared, one run is not a figure."""
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def _one_round(shape: str, n: int, n_naive: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pin(CORE_DAEMON)
        bare = bench_bare_lxml(_shape(shape, n, "A"))
        pipe = trio.run(_pipeline, _shape(shape, n, "P"), tmp / "pipe.sqlite", 32)
        # The floor: per message, bare lxml's time plus SQLite's own CPU for the journal's rows.
        floor = 1 / (1 / bare + journal_sql_cpu_s(tmp / "pipe.sqlite", n) / n)
        naive = bench_naive(_shape(shape, n_naive, "N"), tmp / "naive.sqlite")
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        (tmp / "http").mkdir()
        http = bench_http(tmp / "http", seconds, 32, shape)
        (tmp / "dev").mkdir()
        dev_startup = bench_dev_startup(tmp / "dev")
    return {"bare": bare, "pipe": pipe, "floor": floor, "naive": naive, "dev_startup_s": dev_startup, **http}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (smoke test of the bench itself)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds (interleaved by shape); figures: median [min-max]")
    args = ap.parse_args()
    n = 500 if args.quick else 4000
    n_naive = 100 if args.quick else 400
    seconds = 2.0 if args.quick else 8.0
    print(f"switchd bench: {os.cpu_count()} cores, python {sys.version.split()[0]}, {args.repeat} round(s)")
    print("shapes: minimal = 1-tx pacs.008.001.08 from tests.builders; rich = CBPR+-style 1-tx (bench.messages)\n")
    shapes = ("minimal", "rich")
    runs: dict[str, list[dict[str, Any]]] = {shape: [] for shape in shapes}
    for _ in range(args.repeat):
        for shape in shapes:
            runs[shape].append(_one_round(shape, n, n_naive, seconds))
    rows: list[tuple[str, str, str]] = []
    for shape in shapes:
        size = len(_shape(shape, 1, "S")[0])
        rs = runs[shape]

        def col(key: str, rs: list[dict[str, Any]] = rs) -> list[float]:
            return [float(r[key]) for r in rs]

        pipe_ratio = [r["pipe"] / r["bare"] for r in rs]
        floor_ratio = [r["floor"] / r["bare"] for r in rs]
        # What the pipeline may spend per message at the target (2 / bare) beyond the floor.
        left_us = [(2 / r["bare"] - 1 / r["floor"]) * 1e6 for r in rs]
        http_ratio = [r["rps"] / r["naive"] for r in rs]
        codes: dict[str, int] = {}
        for r in rs:
            for code, count in r["codes"].items():
                codes[code] = codes.get(code, 0) + count
        rows += [
            (
                f"[{shape}, {size} B] bare lxml parse + validate (1 core)",
                f"{_spread(col('bare'))} msg/s",
                "stage limit",
            ),
            (
                "  pipeline: + rules + durable journal (1 core)",
                f"{_spread(col('pipe'))} msg/s",
                f"{_spread(pipe_ratio, '.2f')}x bare lxml (target >= 0.5)",
            ),
            (
                "  floor: bare lxml + SQLite CPU for the journal's rows",
                f"{_spread(col('floor'))} msg/s",
                f"{_spread(floor_ratio, '.2f')}x bare lxml; left at 0.5x for the rest: "
                f"{_spread(left_us, '.0f')} us/message",
            ),
            ("  naive: xmlschema + 1 commit/message (1 core)", f"{_spread(col('naive'))} msg/s", "baseline"),
            (
                "  HTTP end to end, 32 clients, 2 cores shared",
                f"{_spread(col('rps'))} msg/s",
                f"{_spread(http_ratio, '.1f')}x naive (target >= 10)",
            ),
            (
                "  HTTP CPU per request: daemon / intake workers / client",
                f"{_spread(col('cpu_us_daemon'))} / {_spread(col('cpu_us_workers'))} / "
                f"{_spread(col('cpu_us_client'))} us",
                "2 cores",
            ),
            ("  HTTP latency p50", f"{_spread(col('p50_ms'), '.1f')} ms", ""),
            ("  HTTP latency p99", f"{_spread(col('p99_ms'), '.1f')} ms", ""),
            ("  HTTP status codes (all rounds)", str(codes), ""),
            ("  start-up to ready, wall", f"{_spread(col('startup_wall_s'), '.2f')} s", "target < 2 s"),
            ("  start-up to ready, daemon's own log", f"{_spread(col('startup_internal_s'), '.2f')} s", ""),
            (
                "  start-up to ready, dev default (SoftHSM signing, sim bank)",
                f"{_spread(col('dev_startup_s'), '.2f')} s",
                "target < 2 s",
            ),
            ("  daemon peak RSS (VmHWM)", f"{_spread(col('daemon_peak_rss_mib'))} MiB", ""),
        ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>{vwidth}}  {note}")


if __name__ == "__main__":
    main()
