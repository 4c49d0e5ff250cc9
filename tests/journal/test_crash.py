"""kill -9 while committing: every id the child saw committed is there after reopening, and the chain verifies."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switchd.journal import Journal

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 3
START_TIMEOUT = 30.0


def run_and_kill(db: Path, out: Path, prefix: str, seconds: float) -> list[str]:
    """Run the child until it has committed for `seconds`, SIGKILL it, return the complete lines it printed."""
    with out.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.journal.crash_child", str(db), prefix],
            stdout=sink,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not out.read_bytes().startswith(b"ready\n"):
            assert child.poll() is None, f"child exited early with {child.returncode}"
            assert time.monotonic() < deadline, "child did not start"
            time.sleep(0.01)
        time.sleep(seconds)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    text = out.read_text()
    return text.split("\n")[1:-1]  # after "ready"; the last piece may be a line cut by the kill


@pytest.mark.slow
def test_sigkill_never_loses_a_committed_message_nor_corrupts(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite"
    stored: list[str] = []
    routed: list[str] = []
    for round_ in range(ROUNDS):
        lines = run_and_kill(db, tmp_path / f"out{round_}.txt", f"R{round_}", random.uniform(0.6, 1.2))
        stored += [line[2:] for line in lines if line.startswith("S ")]
        routed += [line[2:] for line in lines if line.startswith("E ")]
        assert len(lines) > 50, "the child committed too little to test anything"

        # switchctl reads the crashed journal as it is (read-only), then the daemon restarts on it.
        for readonly in (True, False):
            journal = Journal.open(db, readonly=readonly)
            try:
                result = journal.verify()
                assert result.ok, result.problems
                missing = [mid for mid in stored if journal.get(mid) is None]
                assert missing == [], f"{len(missing)} of {len(stored)} committed messages lost"
                for mid in routed:
                    row = journal.get(mid)
                    assert row is not None and row.state == "routed"
                    assert journal.events(mid)[-1].kind == "routed"
            finally:
                journal.close()
        assert journal_integrity(db) == "ok"


def journal_integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
