"""The write operations, as the SQL the writer thread runs for each one inside its batch transaction.

Hot path: plain stdlib cursor calls, not sqlite-utils' insert helpers (NOTES: those cost 10-20% here).
Whatever a function raises fails that operation alone (see writer.py: the batch runs again with a SAVEPOINT per
operation).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from switchd.journal.chain import canonical_json, event_hash
from switchd.journal.pins import JOURNAL_KEY, message_pin, report_pin
from switchd.journal.reads import MessageNotFound, message_row
from switchd.journal.records import (
    INTAKE_STATES,
    CommitResult,
    Conflict,
    Event,
    Idempotent,
    InboundRecord,
    ReportRecord,
    Stored,
)
from switchd.journal.schema import MESSAGE_COLUMNS

_MESSAGE_FIELDS = tuple(MESSAGE_COLUMNS.split(", "))

# An event ready to chain: (at, kind, detail without "at").
TimedEvent = tuple[str, str, dict[str, Any]]

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, participant, channel, channel_ref, received_at, message_type, family, msg_id,"
    " state, http_status, verdict, sha256, holds_key, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_REF = "INSERT OR IGNORE INTO refs (message_id, kind, value) VALUES (?, ?, ?)"
# The partial UNIQUE index (participant, family, msg_id) WHERE holds_key = 1 answers this: the WHERE implies its
# condition, so the planner may use it (EXPLAIN QUERY PLAN: SEARCH messages USING INDEX idx_messages_key).
_FIND_KEY_HOLDER = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE participant = ? AND family = ? AND msg_id = ? AND holds_key = 1"
)
_INSERT_EVENT = "INSERT INTO events (seq, message_id, at, kind, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_REPORT = (
    "INSERT INTO reports (message_id, participant, report_id, message_type, msg_id, status, created_at, sha256, xml)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Tx:
    """The open batch transaction: the cursor and the chain head, advanced one event at a time.

    New message, ref and event rows are held back and inserted with one executemany per table for the whole batch
    (each sqlite3 call releases and retakes the GIL, a thread switch when the trio thread is waiting for it on the
    same core). Reading `cur` inserts what is held first, so any other statement sees every row written before
    it; the key check reads the held messages itself (`find_key_holder`). A held row that fails to insert fails at
    the next `flush`: the writer then runs the batch again with a flush per operation, so the error is its own.
    """

    def __init__(self, cur: sqlite3.Cursor, seq: int, head: str) -> None:
        self._cur = cur
        self.seq = seq
        self.head = head
        self._messages: list[tuple[Any, ...]] = []
        self._refs: list[tuple[str, str, str]] = []
        self._events: list[tuple[Any, ...]] = []
        # (participant, family, msg_id) -> the MESSAGE_COLUMNS values of a held message that holds the key
        self._held_keys: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    @property
    def cur(self) -> sqlite3.Cursor:
        """The cursor, with every held row inserted (use it for any statement other than the held inserts)."""
        if self._messages or self._refs or self._events:
            self.flush()
        return self._cur

    def flush(self) -> None:
        """Insert the held rows: messages first, for the foreign keys of refs and events."""
        messages, refs, events = self._messages, self._refs, self._events
        self._messages, self._refs, self._events = [], [], []
        self._held_keys.clear()
        if messages:
            self._cur.executemany(_INSERT_MESSAGE, messages)
        if refs:
            self._cur.executemany(_INSERT_REF, refs)
        if events:
            self._cur.executemany(_INSERT_EVENT, events)

    def discard(self) -> None:
        """Drop the held rows (of an operation being rolled back)."""
        self._messages, self._refs, self._events = [], [], []
        self._held_keys.clear()

    def find_key_holder(self, participant: str, family: str, msg_id: str) -> tuple[Any, ...] | None:
        """The MESSAGE_COLUMNS values of the accepted message holding this key, held or stored, or None."""
        held = self._held_keys.get((participant, family, msg_id))
        if held is not None:
            return held
        row: tuple[Any, ...] | None = self._cur.execute(_FIND_KEY_HOLDER, (participant, family, msg_id)).fetchone()
        return row

    def insert_message(self, row: tuple[Any, ...], refs: Sequence[tuple[str, str]], holds_key: bool) -> None:
        """Hold a message row (in _INSERT_MESSAGE's column order) and its refs for the next flush."""
        self._messages.append(row)
        mid = row[0]
        self._refs.extend((mid, kind, value) for kind, value in refs)
        if holds_key:
            self._held_keys[(row[1], row[6], row[7])] = row[: len(_MESSAGE_FIELDS)]

    def add_events(self, message_id: str, events: Sequence[TimedEvent]) -> None:
        rows = self._events
        for at, kind, detail in events:
            detail_json = canonical_json(detail)
            seq = self.seq + 1
            digest = event_hash(self.head, seq, message_id, at, kind, detail_json)
            rows.append((seq, message_id, at, kind, detail_json, self.head, digest))
            self.seq, self.head = seq, digest


def timed(events: Sequence[Event], default_at: str | None) -> list[TimedEvent]:
    """Move each detail's "at" into the event's time, else use `default_at`. Raises ValueError if neither."""
    out: list[TimedEvent] = []
    for kind, detail in events:
        at = detail.get("at", default_at)
        if not isinstance(at, str) or not at:
            raise ValueError(f"event {kind!r} has no time: put 'at' in its detail or pass at=")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"event kind must be a non-empty string, not {kind!r}")
        if JOURNAL_KEY in detail:
            raise ValueError(f"event {kind!r}: the detail key {JOURNAL_KEY!r} is reserved for the journal's own pins")
        out.append((at, kind, {k: v for k, v in detail.items() if k != "at"}))
    return out


def store_inbound(tx: Tx, rec: InboundRecord, events: Sequence[TimedEvent]) -> CommitResult:
    """The duplicate check and the write, in the caller's transaction. Raises ValueError for a malformed record.

    `events` are this call's own (from `timed`): the journal adds its pins (pins.py) to their details in place.
    """
    _check_record(rec, events)
    holds_key = rec.state == "accepted" and rec.family is not None and rec.msg_id is not None
    if holds_key:
        assert rec.family is not None and rec.msg_id is not None
        row = tx.find_key_holder(rec.participant, rec.family, rec.msg_id)
        if row is not None:
            original = message_row(dict(zip(_MESSAGE_FIELDS, row, strict=True)))
            if original.sha256 != rec.sha256:
                return Conflict(original)
            resubmitted = {
                "channel": rec.channel,
                "channel_ref": rec.channel_ref,
                "received_at": rec.received_at,
                "resubmission_id": rec.id,
            }
            tx.add_events(original.id, [(rec.received_at, "resubmitted", resubmitted)])
            return Idempotent(original)
    verdict_json = canonical_json(rec.verdict)
    columns = {
        "participant": rec.participant,
        "channel": rec.channel,
        "channel_ref": rec.channel_ref,
        "received_at": rec.received_at,
        "message_type": rec.message_type,
        "family": rec.family,
        "msg_id": rec.msg_id,
        "http_status": rec.http_status,
        "holds_key": int(holds_key),
    }
    # In _INSERT_MESSAGE's order, which starts with MESSAGE_COLUMNS' (find_key_holder answers with that prefix).
    row = (
        rec.id,
        rec.participant,
        rec.channel,
        rec.channel_ref,
        rec.received_at,
        rec.message_type,
        rec.family,
        rec.msg_id,
        rec.state,
        rec.http_status,
        verdict_json,
        rec.sha256,
        int(holds_key),
        rec.raw,
    )
    # A bulk message may repeat a reference; one row per distinct (kind, value) is what search needs (INSERT OR
    # IGNORE drops the repeats).
    tx.insert_message(row, rec.refs, holds_key)
    # The row as stored, pinned in the chain by the `received` event (which _check_record made events[0]).
    events[0][2][JOURNAL_KEY] = message_pin(columns, rec.state, verdict_json, rec.refs)
    if rec.report is not None:
        events = _pin_inbound_report(tx, rec, events)
    tx.add_events(rec.id, events)
    return Stored(rec.id)


def _pin_inbound_report(tx: Tx, rec: InboundRecord, events: Sequence[TimedEvent]) -> list[TimedEvent]:
    """Store the record's report and pin it in the caller's `reported` event for it, or in one the journal adds."""
    report = rec.report
    assert report is not None
    cursor, digest = _insert_report(tx, rec.id, report, rec.participant)
    pin = report_pin(cursor, _report_columns(report, rec.participant))
    out = list(events)
    for _, kind, detail in out:
        if kind == "reported" and detail.get("report_id", report.report_id) == report.report_id:
            if detail.get("sha256", digest) != digest:
                raise ValueError(f"{rec.id}: the 'reported' event's sha256 is not the sha256 of the report's XML")
            detail["sha256"] = digest
            detail[JOURNAL_KEY] = pin
            return out
    detail = {"report_id": report.report_id, "message_type": report.message_type, "status": report.status}
    out.append((report.created_at, "reported", {**detail, "sha256": digest, JOURNAL_KEY: pin}))
    return out


def append_events(tx: Tx, message_id: str, events: Sequence[TimedEvent], new_state: str | None) -> None:
    """`events` are this call's own (from `timed`): a state change is pinned in the last one's detail."""
    if new_state is not None:
        tx.cur.execute("UPDATE messages SET state = ? WHERE id = ?", (new_state, message_id))
        found = tx.cur.rowcount == 1
    else:
        found = tx.cur.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is not None
    if not found:
        raise MessageNotFound(f"no message {message_id!r} in the journal")
    if new_state is not None:
        # The state holds from the last event of the call on: verify takes a message's last pinned state as its own.
        events[-1][2][JOURNAL_KEY] = {"state": new_state}
    tx.add_events(message_id, events)


def add_report(tx: Tx, message_id: str, report: ReportRecord, participant: str) -> int:
    """Store the report and chain a `reported` event pinning its XML and row; returns the report's cursor."""
    if tx.cur.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
        raise MessageNotFound(f"no message {message_id!r} in the journal")
    seq, digest = _insert_report(tx, message_id, report, participant)
    detail = {
        "report_id": report.report_id,
        "message_type": report.message_type,
        "status": report.status,
        "sha256": digest,
        JOURNAL_KEY: report_pin(seq, _report_columns(report, participant)),
    }
    tx.add_events(message_id, [(report.created_at, "reported", detail)])
    return seq


def _report_columns(report: ReportRecord, participant: str) -> dict[str, Any]:
    return {
        "participant": participant,
        "report_id": report.report_id,
        "message_type": report.message_type,
        "msg_id": report.msg_id,
        "status": report.status,
        "created_at": report.created_at,
    }


def _insert_report(tx: Tx, message_id: str, report: ReportRecord, participant: str) -> tuple[int, str]:
    digest = hashlib.sha256(report.xml).hexdigest()
    cur = tx.cur  # once: inserting held rows on a second access would change lastrowid
    cur.execute(
        _INSERT_REPORT,
        (
            message_id,
            participant,
            report.report_id,
            report.message_type,
            report.msg_id,
            report.status,
            report.created_at,
            digest,
            report.xml,
        ),
    )
    seq = cur.lastrowid
    assert seq is not None
    return seq, digest


def _check_record(rec: InboundRecord, events: Sequence[TimedEvent]) -> None:
    if rec.state not in INTAKE_STATES:
        raise ValueError(f"{rec.id}: state must be one of {INTAKE_STATES}, not {rec.state!r}")
    if hashlib.sha256(rec.raw).hexdigest() != rec.sha256:
        raise ValueError(f"{rec.id}: sha256 is not the sha256 of raw")
    # verify() re-hashes raw against this event: it is what pins the bytes in the chain.
    if not events or events[0][1] != "received" or events[0][2].get("sha256") != rec.sha256:
        raise ValueError(f"{rec.id}: the first event must be 'received' with the raw bytes' sha256 in its detail")
