"""Child process of test_crash: commits from several trio tasks in a loop and prints each id once durable.

    python -m tests.journal.crash_child DB PREFIX

Prints "ready", then "S <id>" after each commit_inbound returned and "E <id>" after each append_events returned,
until it is killed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from switchd.journal import Stored, open_journal

from .factory import make_record

WORKERS = 8


def say(line: str) -> None:
    # One write(2) per line, straight to the file: what was printed survives SIGKILL.
    os.write(sys.stdout.fileno(), (line + "\n").encode())


async def main(path: Path, prefix: str) -> None:
    async with open_journal(path) as journal:
        say("ready")

        async def worker(w: int) -> None:
            i = 0
            while True:
                mid = f"{prefix}-{w}-{i:07d}"
                result = await journal.commit_inbound(make_record(mid, msg_id=mid, raw=mid.encode() * 50))
                assert result == Stored(mid), result
                say(f"S {mid}")
                if i % 3 == 0:
                    at = "2025-03-01T11:00:00.000000Z"
                    await journal.append_events(mid, [("routed", {"connector": "bank-b"})], "routed", at=at)
                    say(f"E {mid}")
                i += 1

        async with trio.open_nursery() as nursery:
            for w in range(WORKERS):
                nursery.start_soon(worker, w)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), sys.argv[2])
