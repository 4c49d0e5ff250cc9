"""Read queries over one read-only connection, and the pool that gives each reading thread its own connection.

Reads are sync: trio callers wrap them in `trio.to_thread.run_sync`, switchctl calls them directly. WAL lets them
run beside the writer; a method that issues several statements runs them in one read transaction (one snapshot).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from switchd.errors import JournalError
from switchd.journal.records import EventRow, MessageRow, ReportRow
from switchd.journal.schema import MESSAGE_COLUMNS, REPORT_COLUMNS, connect_reader

# resolve() matches a key against message ids, MsgIds and these refs.
RESOLVE_REF_KINDS = ("uetr", "end_to_end_id")
GLOB_CHARS = frozenset("*?[")


class MessageNotFound(JournalError):
    """No message with that id."""


def message_row(r: Mapping[str, Any]) -> MessageRow:
    return MessageRow(
        id=r["id"],
        participant=r["participant"],
        channel=r["channel"],
        channel_ref=r["channel_ref"],
        received_at=r["received_at"],
        message_type=r["message_type"],
        family=r["family"],
        msg_id=r["msg_id"],
        state=r["state"],
        http_status=r["http_status"],
        verdict=json.loads(r["verdict"]),
        sha256=r["sha256"],
    )


def report_row(r: Mapping[str, Any]) -> ReportRow:
    return ReportRow(
        seq=r["seq"],
        message_id=r["message_id"],
        participant=r["participant"],
        report_id=r["report_id"],
        message_type=r["message_type"],
        msg_id=r["msg_id"],
        status=r["status"],
        created_at=r["created_at"],
        xml=r["xml"],
    )


class Reader:
    """The read queries, on one connection used by one thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.db = Database(conn, execute_plugins=False)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every statement inside sees the same committed state."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def get(self, message_id: str) -> MessageRow | None:
        for r in self.db.query(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", [message_id]):
            return message_row(r)
        return None

    def raw(self, message_id: str) -> bytes:
        row = self.conn.execute("SELECT raw FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise MessageNotFound(f"no message {message_id!r} in the journal")
        return bytes(row[0])

    def resolve(self, key: str) -> list[MessageRow]:
        marks = ", ".join("?" for _ in RESOLVE_REF_KINDS)
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ("
            "  SELECT id FROM messages WHERE id = ?"
            "  UNION SELECT id FROM messages WHERE msg_id = ?"
            f"  UNION SELECT message_id FROM refs WHERE value = ? AND kind IN ({marks})"
            ") ORDER BY received_at DESC, id DESC"
        )
        return [message_row(r) for r in self.db.query(sql, [key, key, key, *RESOLVE_REF_KINDS])]

    def search(
        self,
        *,
        participant: str | None = None,
        message_type: str | None = None,
        state: str | None = None,
        msg_id: str | None = None,
        end_to_end_id: str | None = None,
        uetr: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]:
        where: list[str] = []
        params: list[Any] = []
        if participant is not None:
            where.append("participant = ?")
            params.append(participant)
        if message_type is not None:
            # A pattern with glob characters is used as it is; otherwise it is a prefix ("pacs.008").
            pattern = message_type if GLOB_CHARS & set(message_type) else message_type + "*"
            where.append("message_type GLOB ?")
            params.append(pattern)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if msg_id is not None:
            where.append("msg_id = ?")
            params.append(msg_id)
        for kind, value in (("end_to_end_id", end_to_end_id), ("uetr", uetr)):
            if value is not None:
                where.append("id IN (SELECT message_id FROM refs WHERE value = ? AND kind = ?)")
                params += [value, kind]
        if since is not None:
            where.append("received_at >= ?")
            params.append(since)
        if until is not None:
            where.append("received_at < ?")
            params.append(until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages {clause} ORDER BY received_at DESC, id DESC LIMIT ?"
        return [message_row(r) for r in self.db.query(sql, [*params, max(0, limit)])]

    def events(self, message_id: str) -> list[EventRow]:
        sql = "SELECT seq, message_id, at, kind, detail FROM events WHERE message_id = ? ORDER BY seq"
        return [
            EventRow(r["seq"], r["message_id"], r["at"], r["kind"], json.loads(r["detail"]))
            for r in self.db.query(sql, [message_id])
        ]

    def refs(self, message_id: str) -> list[tuple[str, str]]:
        sql = "SELECT kind, value FROM refs WHERE message_id = ? ORDER BY kind, value"
        return [(r["kind"], r["value"]) for r in self.db.query(sql, [message_id])]

    def latest_report(self, message_id: str) -> ReportRow | None:
        sql = f"SELECT {REPORT_COLUMNS} FROM reports WHERE message_id = ? ORDER BY seq DESC LIMIT 1"
        for r in self.db.query(sql, [message_id]):
            return report_row(r)
        return None

    def reports(self, participant: str, after: int = 0, limit: int = 100) -> tuple[list[ReportRow], int]:
        sql = f"SELECT {REPORT_COLUMNS} FROM reports WHERE participant = ? AND seq > ? ORDER BY seq LIMIT ?"
        rows = [report_row(r) for r in self.db.query(sql, [participant, after, max(0, limit)])]
        return rows, (rows[-1].seq if rows else after)

    def chain_head(self) -> tuple[int, str]:
        row = self.conn.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        if row is None:
            raise JournalError("the journal has no chain head row")
        return int(row[0]), str(row[1])

    def stats(self) -> dict[str, Any]:
        with self.snapshot():
            by_state = {
                r["state"]: r["n"]
                for r in self.db.query("SELECT state, count(*) AS n FROM messages GROUP BY state ORDER BY state")
            }
            by_type = {
                (r["message_type"] or "unknown"): r["n"]
                for r in self.db.query(
                    "SELECT message_type, count(*) AS n FROM messages GROUP BY message_type ORDER BY message_type"
                )
            }
            events = self.conn.execute("SELECT count(*) FROM events").fetchone()[0]
            reports = self.conn.execute("SELECT count(*) FROM reports").fetchone()[0]
            head_seq, _ = self.chain_head()
        return {
            "messages": sum(by_state.values()),
            "by_state": by_state,
            "by_message_type": by_type,
            "events": events,
            "reports": reports,
            "chain_head_seq": head_seq,
        }


class ReaderPool:
    """One Reader per thread (a sqlite3 connection must not be shared between threads that use it at once).

    trio's worker threads come and go: the connection of a thread that has ended is closed the next time a new
    one is made, and `close()` closes them all.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._readers: dict[threading.Thread, Reader] = {}
        self._closed = False

    def get(self) -> Reader:
        me = threading.current_thread()
        reader = self._readers.get(me)
        if reader is not None:
            return reader
        with self._lock:
            if self._closed:
                raise JournalError(f"{self._path}: the journal is closed")
            for thread in [t for t in self._readers if not t.is_alive()]:
                self._readers.pop(thread).conn.close()
            reader = Reader(connect_reader(self._path))
            self._readers[me] = reader
            return reader

    def close(self) -> None:
        """Close every reader; callers must not be reading at the same time."""
        with self._lock:
            self._closed = True
            for reader in self._readers.values():
                reader.conn.close()
            self._readers.clear()
