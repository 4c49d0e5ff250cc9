"""Read queries over one read-only connection, and the pool that gives each reading thread its own connection.

Reads are sync: trio callers wrap them in `trio.to_thread.run_sync`, switchctl calls them directly. WAL lets them
run beside the writer; a method that issues several statements runs them in one read transaction (one snapshot).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from switchd.errors import JournalError
from switchd.journal.records import EventRow, MessageRow, ReportRow
from switchd.journal.schema import MESSAGE_COLUMNS, REPORT_COLUMNS, connect_reader
from switchd.timefmt import rfc3339

# resolve() matches a key against message ids, MsgIds and these refs.
RESOLVE_REF_KINDS = ("uetr", "end_to_end_id")
GLOB_CHARS = frozenset("*?[")


# related(): status reports are correlated by delivery (a `status_received` event on the original names them);
# they are listed as reports, never as messages whose history is merged into the original's.
REPORT_FAMILIES = frozenset({"pacs.002", "pain.002"})
# SQLite's default limit is 32766 host parameters; stay far below it when a bulk message brings thousands of ids.
_CHUNK = 500


class MessageNotFound(JournalError):
    """No message with that id."""


def time_bound(text: str) -> str:
    """An operator's time in the journal's spelling of time (RFC 3339 UTC, microseconds, Z: timefmt.rfc3339).

    The journal compares times as text, which is right only between times spelled alike: "2026-11-23 15:05" or
    "...T16:05:00+01:00" compared raw with "...T15:05:00.000000Z" give wrong answers, silently. Accepted: ISO 8601
    as datetime.fromisoformat reads it, a date alone (its midnight), a space or T before the time, Z or an offset;
    no offset means UTC. Raises ValueError naming the text.
    """
    try:
        t = datetime.fromisoformat(text.strip())
        return rfc3339(t if t.tzinfo is not None else t.replace(tzinfo=UTC))
    except (ValueError, OverflowError):
        # OverflowError: a valid time whose UTC equivalent is outside datetime's years 1..9999.
        raise ValueError(
            f"{text!r} is not a time: give ISO 8601, e.g. 2026-11-23, '2026-11-23 15:05' or 2026-11-23T15:05:00+01:00"
            " (without Z or an offset: UTC)"
        ) from None


@dataclass(frozen=True)
class RelatedRow:
    """A message related to the one asked about, how, and by which references (see `Reader.related`).

    relation: "original" (the message asked about refers to it: the payment a return, cancellation, resolution
    or status request is about), "referrer" (it refers to the message asked about), "report" (a status report
    about it), "sibling" (it refers to the same original as the message asked about, e.g. the camt.056 a camt.029
    answers). via: how it was matched, e.g. "uetr 4f0c...", "msg_id+end_to_end_id ORIG-1/E2E-1", "msg_id ORIG-1",
    "status_received", "original M0..." (for siblings: through which original).
    """

    relation: str
    message: MessageRow
    via: tuple[str, ...]


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
        # Bounds in the stored spelling (time_bound), or text comparison answers wrongly. Raises ValueError.
        if since is not None:
            where.append("received_at >= ?")
            params.append(time_bound(since))
        if until is not None:
            where.append("received_at < ?")
            params.append(time_bound(until))
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

    def related(self, message_id: str) -> list[RelatedRow]:
        """Messages related to `message_id`, oldest first: the originals it refers to, the messages that refer to
        it, its status reports, and the other messages about its originals. Raises MessageNotFound.

        A message refers to an original through its `original_*` refs (iso.refs.searchable_refs): an OrgnlUETR
        names the message holding that UETR; an OrgnlMsgId with an OrgnlEndToEndId names the message with that
        MsgId (or whose routed part carried it: a bank names what it received) holding that EndToEndId; an
        OrgnlMsgId alone names a message only when the referring message names no transaction at all. An
        EndToEndId alone names nothing: it is unique only within its sender's message. A candidate that itself
        only repeats the id as an original's (another return, a report) is no original, a message is never
        related to itself, and a rejected candidate counts only when no other one matches the same reference
        (a rejected payment corrected and sent again keeps its ids). "referrer" is exactly the inverse of
        "original", so `show` of either side tells the same story. Status reports (REPORT_FAMILIES) are related
        only as delivery correlated them (`status_received` on the original, `correlated` on the report): their
        refs may name a return's original as well as the return.
        """
        with self.snapshot():
            me = self.get(message_id)
            if me is None:
                raise MessageNotFound(f"no message {message_id!r} in the journal")
            found: dict[str, tuple[str, list[str]]] = {}

            def note(mid: str, relation: str, via: Iterable[str]) -> None:
                if mid == message_id:
                    return
                # The first relation found wins (originals, referrers, reports, siblings in that order).
                entry = found.setdefault(mid, (relation, []))
                entry[1].extend(v for v in via if v not in entry[1])

            # Each message's originals are worked out once per call: a bulk return naming many payments is
            # checked again for every one of them when their siblings are looked for.
            memo: dict[str, dict[str, list[str]]] = {}
            originals = self._originals(message_id, memo)
            for mid, via in originals.items():
                note(mid, "original", via)
            for mid, via in self._referrers(message_id, memo).items():
                note(mid, "referrer", via)
            for mid in self._answered_by(message_id):
                note(mid, "report", ["status_received"])
            for original in originals:
                for mid in self._referrers(original, memo):
                    note(mid, "sibling", [f"original {original}"])
            rows = {mid: row for mid in found if (row := self.get(mid)) is not None}
        out = []
        for mid, (relation, via) in found.items():
            row = rows[mid]
            if row.family in REPORT_FAMILIES:
                if relation == "sibling":
                    continue  # a report about the original is the original's business, not this message's
                relation = "report"
            out.append(RelatedRow(relation, row, tuple(via)))
        out.sort(key=lambda r: (r.message.received_at, r.message.id))
        return out

    def _originals(self, message_id: str, memo: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
        """The messages `message_id` refers to: {id: how}. See `related`."""
        known = memo.get(message_id)
        if known is None:
            known = memo[message_id] = self._find_originals(message_id)
        return known

    def _find_originals(self, message_id: str) -> dict[str, list[str]]:
        row = self.get(message_id)
        if row is None:
            return {}
        if row.family in REPORT_FAMILIES:
            # Delivery correlated it with what was sent, precisely (by the part's MsgId and the sending bank);
            # its refs could name a return's original as well as the return.
            sql = (
                "SELECT DISTINCT json_extract(detail, '$.original') FROM events"
                " WHERE message_id = ? AND kind = 'correlated'"
            )
            return {r[0]: ["correlated"] for r in self.conn.execute(sql, (message_id,)) if r[0] is not None}
        by_kind: dict[str, list[str]] = {}
        for kind, value in self.refs(message_id):
            by_kind.setdefault(kind, []).append(value)
        out: dict[str, list[str]] = {}
        for uetr in by_kind.get("original_uetr", []):
            # Holding the UETR as its own id: not another message that names it as an original's.
            sql = (
                "SELECT m.id, m.state FROM refs r JOIN messages m ON m.id = r.message_id"
                " WHERE r.kind = 'uetr' AND r.value = ? AND r.message_id != ? AND NOT EXISTS ("
                "  SELECT 1 FROM refs o WHERE o.message_id = r.message_id AND o.kind = 'original_uetr'"
                "  AND o.value = r.value)"
            )
            _prefer_live(out, self.conn.execute(sql, (uetr, message_id)).fetchall(), f"uetr {uetr}")
        for pair in by_kind.get("original_msg_e2e", []):
            msg_id, e2e = _pair(pair)
            if msg_id is None or e2e is None:
                continue
            sql = (
                "SELECT m.id, m.state FROM refs r JOIN messages m ON m.id = r.message_id"
                " WHERE r.kind = 'end_to_end_id' AND r.value = ? AND r.message_id != ?"
                " AND (m.msg_id = ? OR m.id IN (SELECT message_id FROM outbox WHERE msg_id = ?))"
                " AND NOT EXISTS (SELECT 1 FROM refs o WHERE o.message_id = r.message_id"
                "  AND o.kind = 'original_end_to_end_id' AND o.value = r.value)"
            )
            rows = self.conn.execute(sql, (e2e, message_id, msg_id, msg_id)).fetchall()
            _prefer_live(out, rows, f"msg_id+end_to_end_id {msg_id}/{e2e}")
        if not by_kind.get("original_end_to_end_id") and not by_kind.get("original_uetr"):
            # A reference to a whole message (no transaction named): the MsgId is all there is.
            for msg_id in by_kind.get("original_msg_id", []):
                sql = (
                    "SELECT id, state FROM messages WHERE id != ?1 AND (msg_id = ?2"
                    " OR id IN (SELECT message_id FROM outbox WHERE msg_id = ?2))"
                )
                _prefer_live(out, self.conn.execute(sql, (message_id, msg_id)).fetchall(), f"msg_id {msg_id}")
        return out

    def _referrers(self, message_id: str, memo: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
        """The messages that refer to `message_id` ({id: how}): the candidates naming one of its MsgIds (its own
        and its parts') or UETRs as an original's, kept when `_originals` of the candidate names it."""
        row = self.get(message_id)
        if row is None:
            return {}
        msg_ids = {r[0] for r in self.conn.execute("SELECT msg_id FROM outbox WHERE message_id = ?", (message_id,))}
        if row.msg_id is not None:
            msg_ids.add(row.msg_id)
        own: dict[str, set[str]] = {}
        for kind, value in self.refs(message_id):
            own.setdefault(kind, set()).add(value)
        uetrs = own.get("uetr", set()) - own.get("original_uetr", set())
        candidates: set[str] = set()
        # Every original_msg_e2e pair comes with its original_msg_id, so the MsgIds find those referrers too.
        for kind, values in (("original_msg_id", msg_ids), ("original_uetr", uetrs)):
            for chunk in _chunks(sorted(values)):
                marks = ", ".join("?" for _ in chunk)
                sql = f"SELECT DISTINCT message_id FROM refs WHERE kind = ? AND value IN ({marks})"
                candidates.update(r[0] for r in self.conn.execute(sql, (kind, *chunk)))
        candidates.discard(message_id)
        out: dict[str, list[str]] = {}
        for candidate in sorted(candidates):
            # A report's _originals come from its correlation, the inverse of _answered_by: no double listing.
            via = self._originals(candidate, memo).get(message_id)
            if via is not None:
                out[candidate] = via
        return out

    def _answered_by(self, message_id: str) -> list[str]:
        """The status reports delivery correlated with the message (its `status_received` events name them)."""
        sql = (
            "SELECT DISTINCT json_extract(detail, '$.report_message_id') FROM events"
            " WHERE message_id = ? AND kind = 'status_received'"
        )
        return [r[0] for r in self.conn.execute(sql, (message_id,)) if r[0] is not None]

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


def _prefer_live(out: dict[str, list[str]], rows: Sequence[tuple[str, str]], via: str) -> None:
    """Add the matches of one reference to `out`, leaving rejected ones out when another one matches."""
    live = [mid for mid, state in rows if state != "rejected"]
    for mid in live or [mid for mid, _ in rows]:
        out.setdefault(mid, []).append(via)


def _pair(value: str) -> tuple[str | None, str | None]:
    """An `original_msg_e2e` ref: the JSON pair [OrgnlMsgId, OrgnlEndToEndId]; (None, None) if it is not one."""
    try:
        msg_id, e2e = json.loads(value)
    except (ValueError, TypeError):
        return None, None
    return (msg_id, e2e) if isinstance(msg_id, str) and isinstance(e2e, str) else (None, None)


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


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
