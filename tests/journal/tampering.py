"""Edits behind the journal's back and the verifier's verdict on them: shared by the tamper-evidence tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from switchd.journal import Journal, VerifyResult


@contextmanager
def tamper(path: Path) -> Iterator[sqlite3.Connection]:
    """A raw connection, as an attacker or a careless operator with the file would have."""
    conn = sqlite3.connect(path)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def check(path: Path, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """`Journal.verify` on the file as it is now (opened read-only, as `switchctl journal verify` does)."""
    journal = Journal.open(path, readonly=True)
    try:
        return journal.verify(anchor)
    finally:
        journal.close()
