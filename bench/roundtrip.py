"""Round trip through the real daemon: HTTP intake -> route -> simulated bank's durable receipt -> its pacs.002 back ->
status report available to the originator. Prints throughput, round-trip latency p50/p99 at a steady offered load,
and a naive baseline (one message at a time, a commit per step) from the same run.

    python -m bench.roundtrip [--seconds 8] [--rate 150] [--connections 32] [--sign rsa|ec]

With --sign the same loads run a second time with signing on (a SoftHSM dev token made for the run), so the cost
of signing shows as a ratio from one run. The naive baseline does the same round trip steps in-process, one
message at a time (see `naive`); switchd's figures include HTTP and the load generator on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio
import xmlschema
from lxml import etree

from adapters.local.simbank import read_receipts
from bench.run import _start_daemon, wait_warm
from switchd.iso.refs import extract_refs
from switchd.iso.reports import build_status_report
from switchd.schemas import load_schemas
from tests.builders import Tx, pacs008
from tests.conftest import sim_bank, write_config
from tests.hsm.conftest import hsm_keys

REPO = Path(__file__).resolve().parent.parent
HEADERS = {"Authorization": "Bearer demo-bank-a", "Content-Type": "application/xml"}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


async def closed_loop(url: str, seconds: float, connections: int, receipts: Path) -> dict[str, Any]:
    """As fast as `connections` clients can post; then until the bank has every accepted message."""
    accepted = 0
    t0 = time.perf_counter()
    stop = t0 + seconds

    async def client(n: int) -> None:
        nonlocal accepted
        i = 0
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as c:
            while time.perf_counter() < stop:
                i += 1
                raw = pacs008(msg_id=f"T{n}-{i}", txs=[Tx(end_to_end_id=f"TE{n}-{i}")])
                r = await c.post("/v1/messages", content=raw)
                accepted += r.status_code == 202

    async with trio.open_nursery() as nursery:
        for n in range(connections):
            nursery.start_soon(client, n)
    intake_s = time.perf_counter() - t0
    with trio.fail_after(120):
        while len(await trio.to_thread.run_sync(read_receipts, receipts)) < accepted:
            await trio.sleep(0.05)
    total_s = time.perf_counter() - t0
    return {"accepted": accepted, "intake_per_s": accepted / intake_s, "to_bank_per_s": accepted / total_s}


async def steady(url: str, seconds: float, rate: float) -> dict[str, Any]:
    """Open loop at `rate` msg/s; latency from the POST to the originator's report appearing in GET /v1/reports."""
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = trio.Event()

    async def poll() -> None:
        cursor = 0
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as c:
            while not (done.is_set() and len(seen) >= len(sent)):
                body = (await c.get(f"/v1/reports?after={cursor}&limit=1000")).json()
                now = time.perf_counter()
                for r in body["reports"]:
                    seen.setdefault(r["message_id"], now)
                cursor = body["next"]
                await trio.sleep(0.005)

    async def one(c: httpx.AsyncClient, i: int) -> None:
        t = time.perf_counter()
        r = await c.post("/v1/messages", content=pacs008(msg_id=f"S-{i}", txs=[Tx(end_to_end_id=f"SE-{i}")]))
        if r.status_code == 202:
            sent[r.json()["id"]] = t

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as c, trio.open_nursery() as posts:
            n = int(seconds * rate)
            t0 = trio.current_time()
            for i in range(n):
                await trio.sleep_until(t0 + i / rate)
                posts.start_soon(one, c, i)
        with trio.move_on_after(60):
            while len(seen.keys() & sent.keys()) < len(sent):
                await trio.sleep(0.05)
        done.set()
        nursery.cancel_scope.cancel()
    lat = [(seen[m] - t) * 1000 for m, t in sent.items() if m in seen]
    return {
        "offered_per_s": rate,
        "sent": len(sent),
        "answered": len(lat),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
    }


def naive(n: int, tmp: Path) -> float:
    """The same round trip done the naive way, one message at a time: xmlschema validation of the payment, a
    commit; a file written with fsync for the bank, a commit; the bank's pacs.002 built (with the same report
    builder switchd's simulated bank uses), validated with xmlschema at intake, a commit; matched to the payment
    by OrgnlMsgId, the originator's report built, a commit. Returns round trips per second."""
    payment_xsd = xmlschema.XMLSchema(
        str(REPO / "schemas/iso20022/pacs.008.001.08.xsd"), allow="local", defuse="always"
    )
    report_xsd = xmlschema.XMLSchema(str(REPO / "schemas/iso20022/pacs.002.001.10.xsd"), allow="local", defuse="always")
    catalogue, _ = load_schemas(REPO / "schemas/iso20022")
    payment_def, report_def = catalogue.get("pacs.008.001.08"), catalogue.get("pacs.002.001.10")
    assert payment_def is not None and report_def is not None
    db = sqlite3.connect(tmp / "naive.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, msg_id TEXT, raw BLOB, state TEXT)")
    db.execute("CREATE INDEX m_msg_id ON m (msg_id)")
    db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, message_id INTEGER, xml BLOB)")
    out = tmp / "naive-bank"
    out.mkdir()
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    msgs = [pacs008(msg_id=f"N-{i}", txs=[Tx(end_to_end_id=f"NE-{i}")]) for i in range(n)]
    now = datetime.now(UTC)

    def commit(sql: str, args: tuple[Any, ...]) -> int | None:
        db.execute("BEGIN")
        cur = db.execute(sql, args)
        db.execute("COMMIT")
        return cur.lastrowid

    t0 = time.perf_counter()
    for i, raw in enumerate(msgs):
        root = etree.fromstring(raw, parser)
        payment_xsd.validate(root[1])
        refs = extract_refs(payment_def, root[1])
        row = commit("INSERT INTO m (msg_id, raw, state) VALUES (?, ?, 'accepted')", (refs.msg_id, raw))
        with (out / f"{i}.xml").open("wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        commit("UPDATE m SET state = 'delivered' WHERE id = ?", (row,))
        # The bank answers ACSC; the answer comes back through intake.
        answer = build_status_report(
            report_def=report_def, original_def=payment_def, original=refs, original_msg_id=refs.msg_id,
            findings=(), report_msg_id=f"B-{i}", created_at=now, group_status="ACSC",
        )  # fmt: skip
        answer_root = etree.fromstring(answer, parser)
        report_xsd.validate(answer_root)
        commit("INSERT INTO m (msg_id, raw, state) VALUES (?, ?, 'accepted')", (f"B-{i}", answer))
        original_msg_id = answer_root.findtext(".//{*}OrgnlMsgId")
        (original,) = db.execute("SELECT id FROM m WHERE msg_id = ?", (original_msg_id,)).fetchone()
        report = build_status_report(
            report_def=report_def, original_def=payment_def, original=refs, original_msg_id=refs.msg_id,
            findings=(), report_msg_id=f"R-{i}", created_at=now, group_status="ACSC",
        )  # fmt: skip
        db.execute("BEGIN")
        db.execute("UPDATE m SET state = 'answered' WHERE id = ?", (original,))
        db.execute("INSERT INTO r (message_id, xml) VALUES (?, ?)", (original, report))
        db.execute("COMMIT")
    return n / (time.perf_counter() - t0)


HSM = """
[hsm]
token = "bench-dev"
active = "{label}"
workers = {workers}
"""
KEYS = {"rsa": "switchd-rsa-1", "ec": "switchd-ec-1"}


def run_daemon(tmp: Path, args: argparse.Namespace, hsm: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the real daemon (signing when `hsm` is the [hsm] table), run both loads, stop it."""
    tmp.mkdir()
    receipts = tmp / "receipts.jsonl"
    config = write_config(tmp, workers=1, extra=sim_bank(receipts, concurrency=32) + hsm)
    if hsm:
        switchctl = Path(sys.executable).parent / "switchctl"
        subprocess.run([str(switchctl), "--config", str(config), "hsm", "init-dev"], check=True, capture_output=True)
    proc, url, _, _ = _start_daemon(config, tmp / "daemon.log")
    try:
        wait_warm(tmp / "daemon.log", *(["signer process(es) logged in"] if hsm else []))
        thr = trio.run(closed_loop, url, args.seconds, args.connections, receipts)
        lat = trio.run(steady, url, args.seconds, args.rate)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return thr, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=150.0, help="offered load for the latency run, msg/s")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--sign", choices=["rsa", "ec"], help="also run with signing on (SoftHSM dev token, this key) and compare"
    )
    ap.add_argument("--sign-workers", type=int, default=1, help="signer processes when signing (default 1)")
    args = ap.parse_args()
    runs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs["unsigned"] = run_daemon(tmp / "unsigned", args)
        if args.sign:
            hsm = HSM.format(label=KEYS[args.sign], workers=args.sign_workers) + hsm_keys(**KEYS)
            runs[f"signed {args.sign}"] = run_daemon(tmp / "signed", args, hsm)
        base = naive(300, tmp)
    print(f"switchd round trip bench: python {sys.version.split()[0]}, {args.connections} clients, one machine")
    print(json.dumps({**{k: {"closed_loop": t, "steady": s} for k, (t, s) in runs.items()}, "naive_per_s": base}))
    print(f"naive round trip (in-process, one at a time, no HTTP): {base:,.0f} msg/s")
    for name, (thr, lat) in runs.items():
        print(
            f"[{name}] intake -> bank receipt: {thr['to_bank_per_s']:,.0f} msg/s ({thr['to_bank_per_s'] / base:.2f}x "
            f"naive); intake alone {thr['intake_per_s']:,.0f} msg/s"
        )
        print(
            f"[{name}] round trip (POST -> originator's report) at {lat['offered_per_s']:.0f} msg/s offered: "
            f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms ({lat['answered']}/{lat['sent']} answered)"
        )


if __name__ == "__main__":
    main()
