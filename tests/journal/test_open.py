"""Opening: schema creation and version checks, reopening, read-only mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from switchd.errors import JournalError
from switchd.journal import SCHEMA_VERSION, Journal, Stored, open_journal, writes
from switchd.journal.schema import MIGRATIONS, connect_writer

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


async def test_a_version_2_journal_migrates_with_its_refs(db_path: Path) -> None:
    """v3 rebuilt refs as a WITHOUT ROWID table: a journal written at v2 keeps every ref, search and chain."""
    conn = connect_writer(db_path)
    db = Database(conn, execute_plugins=False)
    for step in MIGRATIONS[:2]:
        step(db)
    conn.execute("PRAGMA user_version = 2")
    cur = conn.cursor()
    cur.execute("BEGIN IMMEDIATE")
    seq, head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    tx = writes.Tx(cur, seq, head)
    for i, refs in enumerate([(("uetr", "U1"), ("end_to_end_id", "E1")), (("uetr", "U2"), ("end_to_end_id", "E1"))]):
        rec = make_record(f"M{i}", msg_id=f"MSG-{i}", refs=refs)
        writes.store_inbound(tx, rec, writes.timed(rec.events, rec.received_at))
    tx.flush()
    cur.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (tx.seq, tx.head))
    cur.execute("COMMIT")
    conn.close()

    async with open_journal(db_path) as journal:
        assert journal.refs("M0") == [("end_to_end_id", "E1"), ("uetr", "U1")]
        assert [m.id for m in journal.resolve("E1")] == ["M1", "M0"]
        assert [m.id for m in journal.resolve("U2")] == ["M1"]
        await journal.commit_inbound(make_record("M2", msg_id="MSG-2", refs=(("uetr", "U1"),)))
        assert sorted(m.id for m in journal.resolve("U1")) == ["M0", "M2"]
        result = journal.verify()
        assert result.ok, result.problems  # the refs pinned in the chain at v2 are the refs read at v3
    assert pragma(db_path, "user_version") == SCHEMA_VERSION
    check = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="rowid"):
            check.execute("SELECT rowid FROM refs")  # clustered on its key now
        plan = " ".join(
            r[3] for r in check.execute("EXPLAIN QUERY PLAN SELECT message_id FROM refs WHERE value = ?", ("U1",))
        )
        assert "idx_refs_value_kind" in plan
    finally:
        check.close()
