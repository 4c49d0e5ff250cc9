"""A small HTTP load generator (trio + h11, keep-alive): N connections post distinct messages, print JSON figures.

Run as its own process so that it does not share a core with the daemon it measures:
    python -m bench.loadgen --url http://127.0.0.1:PORT --token demo-bank-a --connections 32 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from urllib.parse import urlsplit

import h11
import trio

from bench.messages import rich_pacs008
from tests.builders import pacs008

PLACEHOLDER = "PLACEHOLDER-MSGID"


async def _worker(
    host: str,
    port: int,
    token: str,
    template: bytes,
    uetr: bytes,
    n: int,
    deadline: float,
    rate_interval: float,
    stats: dict[str, list[float] | dict[int, int]],
) -> None:
    stream = await trio.open_tcp_stream(host, port)
    conn = h11.Connection(h11.CLIENT)
    i = 0
    next_at = time.perf_counter()
    latencies = stats["latencies"]
    codes = stats["codes"]
    assert isinstance(latencies, list) and isinstance(codes, dict)
    async with stream:
        while time.perf_counter() < deadline:
            if rate_interval:
                next_at += rate_interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await trio.sleep(delay)
            i += 1
            # a fresh MsgId/EndToEndId and UETR each time: every request is a new payment, not a resubmission
            body = template.replace(PLACEHOLDER.encode(), f"B{n}-{i}".encode()).replace(
                uetr, str(uuid.uuid4()).encode()
            )
            headers = [
                ("Host", host),
                ("Content-Type", "application/xml"),
                ("Authorization", f"Bearer {token}"),
                ("Content-Length", str(len(body))),
            ]
            t0 = time.perf_counter()
            data = conn.send(h11.Request(method="POST", target="/v1/messages", headers=headers))
            data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            status = 0
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(ev, h11.Response):
                    status = ev.status_code
                if isinstance(ev, h11.EndOfMessage):
                    break
            latencies.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
            conn.start_next_cycle()


async def run(
    url: str, token: str, connections: int, seconds: float, rate: float, shape: str = "minimal"
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    template = rich_pacs008(PLACEHOLDER, PLACEHOLDER + "-E") if shape == "rich" else pacs008(msg_id=PLACEHOLDER)
    match = re.search(rb"<UETR>([^<]+)</UETR>", template)
    assert match is not None
    uetr = match.group(1)
    stats: dict[str, list[float] | dict[int, int]] = {"latencies": [], "codes": {}}
    interval = connections / rate if rate else 0.0
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    async with trio.open_nursery() as nursery:
        for n in range(connections):
            nursery.start_soon(_worker, host, port, token, template, uetr, n, deadline, interval, stats)
    elapsed = time.perf_counter() - start
    lat = sorted(stats["latencies"])
    return {
        "requests": len(lat),
        "seconds": elapsed,
        "rps": len(lat) / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
        "codes": stats["codes"],
        "body_bytes": len(template),
        "client_cpu_s": time.process_time() - cpu,  # this process's CPU while it sent requests
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", default="demo-bank-a")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0.0, help="offered load in requests/s (0 = closed loop)")
    p.add_argument("--shape", choices=["minimal", "rich"], default="minimal", help="message shape (bench.messages)")
    a = p.parse_args()
    print(json.dumps(trio.run(run, a.url, a.token, a.connections, a.seconds, a.rate, a.shape)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
