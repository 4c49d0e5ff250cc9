"""Opening: schema creation and version checks, reopening, read-only mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from switchd.errors import JournalError
from switchd.journal import SCHEMA_VERSION, Journal, Stored, open_journal

from .factory import make_record, make_report


def pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


async def test_new_journal_is_wal_at_the_current_schema_version(db_path: Path) -> None:
    async with open_journal(db_path):
        pass
    assert pragma(db_path, "user_version") == SCHEMA_VERSION
    assert pragma(db_path, "journal_mode") == "wal"


async def test_reopen_after_close_keeps_everything(db_path: Path) -> None:
    async with open_journal(db_path) as journal:
        await journal.commit_inbound(make_record("M1", refs=(("uetr", "U1"),)))
        await journal.add_report("M1", make_report("R1"), "BANKA")
        head = journal.chain_head()
    async with open_journal(db_path) as journal:
        assert journal.chain_head() == head
        assert [m.id for m in journal.resolve("U1")] == ["M1"]
        assert journal.raw("M1") == make_record("M1").raw
        assert [e.kind for e in journal.events("M1")] == ["received", "validated", "accepted", "reported"]
        # The chain continues where it stopped.
        assert await journal.commit_inbound(make_record("M2", msg_id="MSG-2")) == Stored("M2")
        assert journal.events("M2")[0].seq == head[0] + 1
        assert journal.verify().ok


async def test_read_only_journal_reads_but_cannot_write(db_path: Path) -> None:
    async with open_journal(db_path) as journal:
        await journal.commit_inbound(make_record("M1"))
        # A read-only journal (switchctl) beside the running writer sees committed data.
        reader = Journal.open(db_path, readonly=True)
        try:
            assert reader.get("M1") is not None
            assert reader.readonly
            with pytest.raises(JournalError, match="read-only"):
                await reader.commit_inbound(make_record("M2", msg_id="MSG-2"))
            with pytest.raises(JournalError, match="read-only"):
                await reader.append_events("M1", [("routed", {})], at="2025-03-01T11:00:00.000000Z")
            with pytest.raises(JournalError, match="read-only"):
                await reader.add_report("M1", make_report(), "BANKA")
            with pytest.raises(JournalError, match="read-only"):
                await reader.start()
            assert reader.statistics().ops == 0
            assert reader.verify().ok
        finally:
            reader.close()


def test_read_only_open_of_a_missing_file_fails_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nope.sqlite"
    with pytest.raises(JournalError, match="cannot open"):
        Journal.open(path, readonly=True)
    assert not path.exists()


def test_read_only_open_of_an_unmigrated_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    sqlite3.connect(path).close()
    path.write_bytes(b"")
    with pytest.raises(JournalError, match=r"schema version 0.*read-write once"):
        Journal.open(path, readonly=True)


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    Journal.open(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match="newer than this switchd"):
        Journal.open(db_path)
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Journal.open(db_path, readonly=True)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError):
        Journal.open(path)
    with pytest.raises(JournalError):
        Journal.open(path, readonly=True)


def test_reads_after_close_fail_cleanly(db_path: Path) -> None:
    journal = Journal.open(db_path)
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.get("M1")
