"""The outbox: outbound parts of accepted messages, each delivery attempt, bank answers, timeouts and replays.

Every function here runs in the writer thread inside the batch transaction (like writes.py) and chains an event on
the message it concerns, so `switchctl show` tells the whole life of a message from the events alone. Attempts are
recorded BEFORE the bytes leave (begin_attempt) and settled after: a row still `sending` at start-up was perhaps
delivered, and is re-sent marked as a possible duplicate (recover_inflight) — never lost, never silently doubled.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from switchd.journal.pins import JOURNAL_KEY
from switchd.journal.reads import MessageNotFound
from switchd.journal.records import AttemptRow, OutboxEntry, OutboxRow, ReportRecord
from switchd.journal.writes import TimedEvent, Tx, add_report

# Message states after intake, as delivery moves them on.
DELIVERED = "delivered"  # every part is with its bank
FAILED = "failed"  # a part could not be delivered (retries exhausted, or refused): the originator got a RJCT
TIMED_OUT = "timed_out"  # a deadline passed before the bank answered: the originator got a RJCT
ANSWERED = "answered"  # the bank(s) answered; the answer's status is in the events and the reports
REPLAYED = "replayed"  # an operator sent it again; delivery moves it on from here
RETURNED = "returned"  # the bank it went to sent the funds back (pacs.004); the originator got the return

OUTBOX_COLUMNS = (
    "id, message_id, part, connector, route, msg_id, tx_indexes, state, attempts, next_at, deadline_at, "
    "possible_duplicate, created_at, updated_at, last_error, receipt, answer, payload"
)
ATTEMPT_COLUMNS = (
    "outbox_id, attempt, started_at, payload, sha256, key_label, possible_duplicate, outcome, finished_at, detail"
)


class OutboxConflict(ValueError):
    """The row is not in a state that allows the operation (e.g. a timed-out part is not sent any more)."""


def outbox_id(message_id: str, part: int) -> str:
    return f"{message_id}.{part}"


def outbox_row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        id=r[0],
        message_id=r[1],
        part=r[2],
        connector=r[3],
        route=r[4],
        msg_id=r[5],
        tx_indexes=tuple(json.loads(r[6])),
        state=r[7],
        attempts=r[8],
        next_at=r[9],
        deadline_at=r[10],
        possible_duplicate=bool(r[11]),
        created_at=r[12],
        updated_at=r[13],
        last_error=r[14],
        receipt=r[15],
        answer=r[16],
        payload=bytes(r[17]) if r[17] is not None else None,
    )


def attempt_row(r: Sequence[Any]) -> AttemptRow:
    return AttemptRow(
        outbox_id=r[0],
        attempt=r[1],
        started_at=r[2],
        payload=bytes(r[3]),
        sha256=r[4],
        key_label=r[5],
        possible_duplicate=bool(r[6]),
        outcome=r[7],
        finished_at=r[8],
        detail=r[9],
    )


# --- writes (writer thread, inside the batch transaction) ---------------------------------------------------------


def insert_entries(tx: Tx, message_id: str, entries: Iterable[OutboxEntry], at: str) -> list[TimedEvent]:
    """Insert the rows and return one `routed` event per part (the caller chains them with its own)."""
    events: list[TimedEvent] = []
    rows = []
    for e in entries:
        oid = outbox_id(message_id, e.part)
        rows.append(
            (
                oid,
                message_id,
                e.part,
                e.connector,
                e.route,
                e.msg_id,
                json.dumps(list(e.tx_indexes)),
                "pending",
                at,
                e.deadline_at,
                int(e.possible_duplicate),
                at,
                at,
            )
        )
        detail: dict[str, Any] = {
            "outbox_id": oid,
            "part": e.part,
            "connector": e.connector,
            "route": e.route,
            "msg_id": e.msg_id,
            "transactions": len(e.tx_indexes),
        }
        if e.deadline_at is not None:
            detail["deadline_at"] = e.deadline_at
        if e.possible_duplicate:
            detail["possible_duplicate"] = True
        events.append((at, "routed", detail))
    tx.cur.executemany(
        "INSERT INTO outbox (id, message_id, part, connector, route, msg_id, tx_indexes, state, next_at,"
        " deadline_at, possible_duplicate, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return events


def _get(tx: Tx, oid: str) -> OutboxRow:
    r = tx.cur.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (oid,)).fetchone()
    if r is None:
        raise MessageNotFound(f"no outbox entry {oid!r} in the journal")
    return outbox_row(r)


def _set_state(tx: Tx, message_id: str, state: str, events: list[TimedEvent]) -> None:
    """Move the message to `state`, pinned on the last event (see pins.py), and chain the events."""
    tx.cur.execute("UPDATE messages SET state = ? WHERE id = ?", (state, message_id))
    at, kind, detail = events[-1]
    events[-1] = (at, kind, {**detail, JOURNAL_KEY: {"state": state}})
    tx.add_events(message_id, events)


def begin_attempt(
    tx: Tx, oid: str, at: str, payload: bytes, unsigned: bytes | None, key_label: str | None
) -> tuple[int, bool]:
    """Record that `payload` is about to be handed to the connector; returns (attempt number, possible_duplicate).

    `unsigned` is stored as the row's payload the first time (later attempts and replays start from it).
    Raises OutboxConflict unless the row is pending.
    """
    row = _get(tx, oid)
    if row.state != "pending":
        raise OutboxConflict(f"{oid} is {row.state}, not pending")
    attempt = row.attempts + 1
    digest = hashlib.sha256(payload).hexdigest()
    tx.cur.execute(
        "UPDATE outbox SET state = 'sending', attempts = ?, updated_at = ?, payload = coalesce(payload, ?)"
        " WHERE id = ?",
        (attempt, at, unsigned, oid),
    )
    tx.cur.execute(
        "INSERT INTO attempts (outbox_id, attempt, started_at, payload, sha256, key_label, possible_duplicate)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (oid, attempt, at, payload, digest, key_label, int(row.possible_duplicate)),
    )
    detail: dict[str, Any] = {"outbox_id": oid, "attempt": attempt, "connector": row.connector, "sha256": digest}
    if key_label is not None:
        detail["key_label"] = key_label
    if row.possible_duplicate:
        detail["possible_duplicate"] = True
    tx.add_events(row.message_id, [(at, "attempt", detail)])
    return attempt, row.possible_duplicate


def finish_attempt(
    tx: Tx,
    oid: str,
    attempt: int,
    at: str,
    *,
    outcome: str,
    detail: str | None,
    retry_at: str | None = None,
    report: ReportRecord | None = None,
    originator: str | None = None,
) -> None:
    """Settle an attempt: `delivered` (detail = the connector's receipt), `retry` (at `retry_at`) or `failed`
    (no more attempts: `report` is the RJCT stored for `originator`)."""
    row = _get(tx, oid)
    if row.state != "sending" or row.attempts != attempt:
        raise OutboxConflict(f"{oid} attempt {attempt} is not running (state {row.state}, attempt {row.attempts})")
    tx.cur.execute(
        "UPDATE attempts SET outcome = ?, finished_at = ?, detail = ? WHERE outbox_id = ? AND attempt = ?",
        (outcome, at, detail, oid, attempt),
    )
    base = {"outbox_id": oid, "attempt": attempt, "connector": row.connector}
    if outcome == "delivered":
        tx.cur.execute(
            "UPDATE outbox SET state = 'delivered', receipt = ?, last_error = NULL, updated_at = ? WHERE id = ?",
            (detail, at, oid),
        )
        events: list[TimedEvent] = [(at, "delivered", {**base, "receipt": detail})]
        undelivered = tx.cur.execute(
            "SELECT count(*) FROM outbox WHERE message_id = ? AND state IN ('pending', 'sending')", (row.message_id,)
        ).fetchone()[0]
        state = _message_state(tx, row.message_id)
        if undelivered == 0 and state not in (FAILED, TIMED_OUT, ANSWERED):
            _set_state(tx, row.message_id, DELIVERED, events)
        else:
            tx.add_events(row.message_id, events)
    elif outcome == "retry":
        if retry_at is None:
            raise ValueError("a retry needs retry_at")
        tx.cur.execute(
            "UPDATE outbox SET state = 'pending', next_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
            (retry_at, detail, at, oid),
        )
        tx.add_events(row.message_id, [(at, "attempt_failed", {**base, "error": detail, "retry_at": retry_at})])
    elif outcome == "failed":
        tx.cur.execute(
            "UPDATE outbox SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ?", (detail, at, oid)
        )
        _set_state(tx, row.message_id, FAILED, [(at, "delivery_failed", {**base, "error": detail})])
        if report is not None and originator is not None:
            add_report(tx, row.message_id, report, originator)
    else:
        raise ValueError(f"unknown attempt outcome {outcome!r}")


def fail_unsent(tx: Tx, oid: str, at: str, error: str, report: ReportRecord | None, originator: str | None) -> bool:
    """A pending part whose bytes cannot be built (never sent): failed for good, with the RJCT for `originator`.
    False if the row is no longer pending (settled, or being sent, meanwhile)."""
    row = _get(tx, oid)
    if row.state != "pending":
        return False
    tx.cur.execute("UPDATE outbox SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ?", (error, at, oid))
    detail = {"outbox_id": oid, "attempt": row.attempts, "connector": row.connector, "error": error, "sent": False}
    _set_state(tx, row.message_id, FAILED, [(at, "delivery_failed", detail)])
    if report is not None and originator is not None:
        add_report(tx, row.message_id, report, originator)
    return True


def _message_state(tx: Tx, message_id: str) -> str:
    r = tx.cur.execute("SELECT state FROM messages WHERE id = ?", (message_id,)).fetchone()
    if r is None:
        raise MessageNotFound(f"no message {message_id!r} in the journal")
    return str(r[0])


def recover_inflight(tx: Tx, at: str) -> list[str]:
    """At start-up: attempts the last run did not settle may have reached the bank. Their rows go back to pending,
    marked possible duplicate (the re-send carries PssblDplct). Returns the outbox ids."""
    rows = tx.cur.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'sending'").fetchall()
    out = []
    for r in rows:
        row = outbox_row(r)
        tx.cur.execute(
            "UPDATE attempts SET outcome = 'unknown', finished_at = ? WHERE outbox_id = ? AND attempt = ?",
            (at, row.id, row.attempts),
        )
        tx.cur.execute(
            "UPDATE outbox SET state = 'pending', possible_duplicate = 1, next_at = ?, updated_at = ? WHERE id = ?",
            (at, at, row.id),
        )
        detail = {"outbox_id": row.id, "attempt": row.attempts, "connector": row.connector}
        tx.add_events(row.message_id, [(at, "attempt_unknown", {**detail, "possible_duplicate": True})])
        out.append(row.id)
    return out


def record_answer(
    tx: Tx,
    oid: str,
    at: str,
    *,
    report_message_id: str,
    status: str,
    transactions: Sequence[dict[str, Any]],
    forward: ReportRecord | None,
    originator: str,
) -> bool:
    """A bank's status report for part `oid`: chained on the original (and a `correlated` event on the report
    message). A first answer moves the original to `answered` and stores `forward` for the originator; an answer
    after a timeout or a second answer is journaled and flagged (`late` / `repeated`), nothing forwarded.
    Returns whether it was forwarded."""
    row = _get(tx, oid)
    late = row.answer == "TIMEOUT"
    repeated = row.answer is not None and not late
    detail: dict[str, Any] = {
        "outbox_id": oid,
        "connector": row.connector,
        "report_message_id": report_message_id,
        "status": status,
        "transactions": list(transactions),
    }
    if late:
        detail["flag"] = "late"
    elif repeated:
        detail["flag"] = "repeated"
    tx.add_events(report_message_id, [(at, "correlated", {"original": row.message_id, "outbox_id": oid})])
    if late or repeated:
        tx.add_events(row.message_id, [(at, "status_received", detail)])
        return False
    tx.cur.execute("UPDATE outbox SET answer = ?, updated_at = ? WHERE id = ?", (status, at, oid))
    if row.state == "pending":
        # The bank answered before we settled the attempt (or knew it arrived): nothing is left to send.
        tx.cur.execute("UPDATE outbox SET state = 'delivered', updated_at = ? WHERE id = ?", (at, oid))
    _set_state(tx, row.message_id, ANSWERED, [(at, "status_received", detail)])
    if forward is not None:
        add_report(tx, row.message_id, forward, originator)
    return True


def record_return(
    tx: Tx,
    oid: str,
    at: str,
    *,
    return_message_id: str,
    transactions: Sequence[dict[str, Any]],
    forward: ReportRecord,
    originator: str,
) -> None:
    """A bank's return (pacs.004) of part `oid`: chained on the original, which becomes `returned`, and on the return
    (`correlated`); `forward` (the return as the bank sent it) is stored for the originator. Unlike a status
    report, a return always goes on: the funds came back whatever was answered before."""
    row = _get(tx, oid)
    detail: dict[str, Any] = {
        "outbox_id": oid,
        "connector": row.connector,
        "return_message_id": return_message_id,
        "transactions": list(transactions),
    }
    tx.add_events(return_message_id, [(at, "correlated", {"original": row.message_id, "outbox_id": oid})])
    _set_state(tx, row.message_id, RETURNED, [(at, "returned", detail)])
    add_report(tx, row.message_id, forward, originator)


def flag_unmatched(tx: Tx, report_message_id: str, at: str, why: str) -> None:
    """A status report that correlates with nothing we sent: kept and flagged for operators, never dropped."""
    _set_state(tx, report_message_id, "unmatched", [(at, "unmatched", {"why": why})])


def time_out(tx: Tx, oid: str, at: str, report: ReportRecord | None, originator: str) -> bool:
    """The part's deadline passed with no answer: the originator gets `report` (RJCT), a part not yet sent is not
    sent any more (`expired`). Returns False when an answer came first (nothing done)."""
    row = _get(tx, oid)
    if row.answer is not None:
        return False
    tx.cur.execute("UPDATE outbox SET answer = 'TIMEOUT', updated_at = ? WHERE id = ?", (at, oid))
    detail: dict[str, Any] = {"outbox_id": oid, "connector": row.connector, "deadline_at": row.deadline_at}
    if row.state == "pending":
        tx.cur.execute("UPDATE outbox SET state = 'expired', updated_at = ? WHERE id = ?", (at, oid))
        detail["sent"] = row.attempts > 0
    _set_state(tx, row.message_id, TIMED_OUT, [(at, "timed_out", detail)])
    if report is not None:
        add_report(tx, row.message_id, report, originator)
    return True


def replay(
    tx: Tx, message_id: str, entries: Sequence[OutboxEntry], at: str, *, operator: str, reason: str
) -> list[str]:
    """Queue `entries` (parts numbered after the existing ones, marked possible duplicate) and chain `replayed`
    with who and why. Returns the new outbox ids."""
    _message_state(tx, message_id)  # raises MessageNotFound
    routed = insert_entries(tx, message_id, entries, at)
    ids = [d["outbox_id"] for _, _, d in routed]
    events = [(at, "replayed", {"operator": operator, "reason": reason, "outbox_ids": ids}), *routed]
    _set_state(tx, message_id, REPLAYED, events)
    return ids


# --- reads (a reader connection) --------------------------------------------------------------------------------


def due(conn: sqlite3.Connection, connector: str, now: str, limit: int) -> list[OutboxRow]:
    sql = (
        f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE connector = ? AND state = 'pending' AND next_at <= ?"
        " ORDER BY next_at LIMIT ?"
    )
    return [outbox_row(r) for r in conn.execute(sql, (connector, now, limit))]


def next_due_at(conn: sqlite3.Connection, connector: str) -> str | None:
    r = conn.execute(
        "SELECT min(next_at) FROM outbox WHERE connector = ? AND state = 'pending'", (connector,)
    ).fetchone()
    return r[0] if r else None


def overdue(conn: sqlite3.Connection, now: str, limit: int) -> list[OutboxRow]:
    sql = (
        f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE deadline_at IS NOT NULL AND answer IS NULL AND deadline_at <= ?"
        " ORDER BY deadline_at LIMIT ?"
    )
    return [outbox_row(r) for r in conn.execute(sql, (now, limit))]


def next_deadline(conn: sqlite3.Connection) -> str | None:
    r = conn.execute("SELECT min(deadline_at) FROM outbox WHERE deadline_at IS NOT NULL AND answer IS NULL").fetchone()
    return r[0] if r else None


def for_message(conn: sqlite3.Connection, message_id: str) -> list[OutboxRow]:
    sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id = ? ORDER BY part"
    return [outbox_row(r) for r in conn.execute(sql, (message_id,))]


def by_msg_id(conn: sqlite3.Connection, msg_id: str) -> list[OutboxRow]:
    """Parts sent under this MsgId, newest part first (a replay keeps the MsgId)."""
    sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE msg_id = ? ORDER BY created_at DESC, part DESC"
    return [outbox_row(r) for r in conn.execute(sql, (msg_id,))]


def attempts(conn: sqlite3.Connection, oid: str) -> list[AttemptRow]:
    sql = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE outbox_id = ? ORDER BY attempt"
    return [attempt_row(r) for r in conn.execute(sql, (oid,))]


def depth_by_connector(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """{connector: {state: rows}} over the whole outbox."""
    out: dict[str, dict[str, int]] = {}
    for connector, state, n in conn.execute(
        "SELECT connector, state, count(*) FROM outbox GROUP BY connector, state ORDER BY connector, state"
    ):
        out.setdefault(connector, {})[state] = n
    return out
