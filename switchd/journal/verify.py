"""Tamper evidence check: walk the hash chain and re-hash every raw message, naming each row that is wrong.

What it proves: since the chain head (or the `anchor` kept elsewhere), no event was edited, deleted, inserted or
reordered, the tail was not cut off, and every message's raw bytes are the ones its `received` event pinned. For
messages written with the journal's own pins (pins.py): the message row's fixed columns, verdict and refs are the
ones pinned at intake, its state is the last one pinned, and every report row (XML and columns) is the one its
`reported` event pinned, with no report row that no event pins. Every delivery attempt row (the exact bytes handed
to the bank: the operator's proof of what was sent) matches its `attempt` event (sha256 of the payload, key label,
start time, possible-duplicate flag) and the event that settled it (outcome, time, receipt or error); an attempt
row no event pins, and an `attempt` event whose row is gone, are named too.
What it cannot prove on its own: someone with write access who recomputes every later hash and the chain head
leaves a consistent chain; only an anchor kept outside the database (`VerifyResult.head`) catches that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from switchd.journal.chain import GENESIS, canonical_json, event_hash
from switchd.journal.pins import JOURNAL_KEY, MESSAGE_PINNED, REPORT_PINNED, refs_digest, verdict_digest
from switchd.journal.reads import Reader
from switchd.journal.records import Problem, VerifyResult


def verify(reader: Reader, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Check the whole journal in one read snapshot. Never raises for what it finds: every finding is a Problem."""
    problems: list[Problem] = []
    pinned = _PinnedReports()
    with reader.snapshot():
        checked, last_seq, last_hash = _walk_chain(reader, problems, pinned)
        head = _check_head(reader, last_seq, last_hash, problems)
        messages = _check_messages(reader, problems, pinned)
        _check_attempts(reader, problems, pinned)
        if anchor is not None:
            _check_anchor(reader, anchor, problems)
    return VerifyResult(ok=not problems, checked=checked, problems=problems, messages=messages, head=head)


class _PinnedReports:
    """The report rows the chain names, gathered while walking it: by cursor (pinned rows), or by (message id,
    report id) for `reported` events older than the pins. Small: one entry per report, not per message."""

    def __init__(self) -> None:
        self.cursors: set[int] = set()
        self.legacy: set[tuple[str, Any]] = set()
        # Messages with an event already named as edited: their pins cannot be trusted, so the row checks that
        # rely on them would only repeat that finding in misleading words.
        self.edited: set[str] = set()
        # The edited events themselves (only the tampered ones: small), for the attempt checks, which compare a
        # row with one event rather than with everything pinned on its message.
        self.edited_seqs: set[int] = set()


def _walk_chain(reader: Reader, problems: list[Problem], pinned: _PinnedReports) -> tuple[int, int, str]:
    expected, prev, checked = 1, GENESIS, 0
    rows = reader.conn.execute("SELECT seq, message_id, at, kind, detail, prev_hash, hash FROM events ORDER BY seq")
    for seq, message_id, at, kind, detail_text, prev_hash, stored in rows:
        checked += 1
        gap = seq != expected
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            problems.append(Problem(expected, None, f"event(s) {missing} missing: deleted from the chain"))
        elif seq < expected:
            problems.append(Problem(seq, None, f"unexpected seq {seq} (expected {expected}): renumbered"))
        if prev_hash != prev and not gap:
            # After a reported gap the broken link is the same finding; otherwise it is its own.
            problems.append(
                Problem(seq, None, "prev_hash does not match the previous event's hash: events reordered or inserted")
            )
        detail = _parse(detail_text)
        recomputed = None if detail is _UNREADABLE else _rehash(prev_hash, seq, message_id, at, kind, detail)
        if recomputed is None:
            problems.append(Problem(seq, message_id, "event row cannot be re-hashed (bad JSON or prev_hash): edited"))
            pinned.edited.add(message_id)
            pinned.edited_seqs.add(seq)
        elif recomputed != stored:
            problems.append(Problem(seq, message_id, f"{kind!r} event content does not match its hash: edited"))
            pinned.edited.add(message_id)
            pinned.edited_seqs.add(seq)
        if kind == "reported" and isinstance(detail, dict):
            pin = detail.get(JOURNAL_KEY)
            if isinstance(pin, dict) and isinstance(pin.get("cursor"), int):
                pinned.cursors.add(pin["cursor"])
                _check_pinned_report(reader, seq, message_id, detail, pin, problems)
            else:
                pinned.legacy.add((message_id, detail.get("report_id")))
                if "sha256" in detail:
                    _check_report(reader, seq, message_id, detail, problems)
        # Continue from the stored hash, so one edited row is named once rather than poisoning all later rows.
        prev, expected = stored, max(expected, seq + 1)
    return checked, expected - 1, prev


def _check_head(reader: Reader, last_seq: int, last_hash: str, problems: list[Problem]) -> tuple[int, str] | None:
    row = reader.conn.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    if row is None:
        problems.append(Problem(last_seq, None, "the chain head row is missing"))
        return None
    head_seq, head_hash = int(row[0]), str(row[1])
    if head_seq > last_seq:
        missing = f"{last_seq + 1}" if head_seq == last_seq + 1 else f"{last_seq + 1}..{head_seq}"
        problems.append(
            Problem(last_seq + 1, None, f"event(s) {missing} missing: chain tail truncated (head is {head_seq})")
        )
    elif head_seq < last_seq:
        problems.append(
            Problem(head_seq + 1, None, f"events after the chain head ({head_seq}): written outside the journal")
        )
    elif head_hash != last_hash:
        problems.append(Problem(last_seq, None, "the chain head's hash does not match the last event"))
    return head_seq, head_hash


# Per message: its first `received` event (the pins of raw and row) and the last state pinned for it. A detail that
# is not JSON (an edit the chain walk names) must not abort the query: json_valid guards json_extract.
_MESSAGES = f"""
SELECT m.id, m.sha256, m.raw, m.state, m.verdict, {", ".join("m." + c for c in MESSAGE_PINNED)},
  (SELECT e.seq FROM events e WHERE e.message_id = m.id AND e.kind = 'received' ORDER BY e.seq LIMIT 1),
  (SELECT e.detail FROM events e WHERE e.message_id = m.id AND e.kind = 'received' ORDER BY e.seq LIMIT 1),
  (SELECT json_object('seq', e.seq, 'state', json_extract(e.detail, '$.{JOURNAL_KEY}.state')) FROM events e
    WHERE e.message_id = m.id AND json_valid(e.detail)
      AND json_extract(e.detail, '$.{JOURNAL_KEY}.state') IS NOT NULL
    ORDER BY e.seq DESC LIMIT 1)
FROM messages m ORDER BY m.id
"""


def _check_messages(reader: Reader, problems: list[Problem], pinned: _PinnedReports) -> int:
    count = 0
    # A second connection-level cursor: the refs of each message are read while the messages are iterated.
    refs_cur = reader.conn.cursor()
    for row in reader.conn.execute(_MESSAGES):
        message_id, column_sha, raw, state, verdict = row[:5]
        columns = dict(zip(MESSAGE_PINNED, row[5 : 5 + len(MESSAGE_PINNED)], strict=True))
        received_seq, received_detail, last_state = row[5 + len(MESSAGE_PINNED) :]
        count += 1
        actual = hashlib.sha256(raw).hexdigest()
        if actual != column_sha:
            problems.append(Problem(None, message_id, "raw bytes do not match the message's sha256: raw edited"))
        detail = _parse(received_detail)
        pinned_sha = detail.get("sha256") if isinstance(detail, dict) else None
        if pinned_sha is None:
            problems.append(Problem(None, message_id, "no 'received' event pinning the raw bytes' sha256"))
        elif pinned_sha != actual:
            problems.append(
                Problem(None, message_id, f"raw bytes do not match the sha256 in its 'received' event {received_seq}")
            )
        elif column_sha != pinned_sha:
            problems.append(Problem(None, message_id, "the sha256 column was edited"))
        pin = detail.get(JOURNAL_KEY) if isinstance(detail, dict) else None
        if not isinstance(pin, dict) or message_id in pinned.edited:
            continue  # written before the journal pinned rows (only raw can be checked), or its events are edited
        where = f"the 'received' event {received_seq}"
        for name, value in columns.items():
            if name not in pin or pin[name] != value:
                problems.append(
                    Problem(None, message_id, f"{name} edited: the row has {value!r}, {where} pinned {pin.get(name)!r}")
                )
        if _verdict_digest(verdict) != pin.get("verdict_sha256"):
            problems.append(Problem(None, message_id, f"verdict edited: it does not match the digest in {where}"))
        refs = refs_cur.execute("SELECT kind, value FROM refs WHERE message_id = ?", (message_id,)).fetchall()
        if refs_digest(refs) != pin.get("refs_sha256"):
            problems.append(
                Problem(None, message_id, f"refs edited (added, removed or changed): they do not match {where}")
            )
        state_pin = _parse(last_state) if last_state is not None else None
        if isinstance(state_pin, dict) and state_pin.get("state") != state:
            last = f"{state_pin.get('state')!r} (event {state_pin.get('seq')})"
            problems.append(
                Problem(
                    None,
                    message_id,
                    f"state edited: the row has {state!r}, the chain's last state is {last}"
                    " (or the events that changed it were deleted)",
                )
            )
    refs_cur.close()
    for seq, message_id, report_id, digest, xml in reader.conn.execute(
        "SELECT seq, message_id, report_id, sha256, xml FROM reports ORDER BY seq"
    ):
        if hashlib.sha256(xml).hexdigest() != digest:
            problems.append(
                Problem(None, message_id, f"report {report_id!r} (cursor {seq}) XML does not match its sha256: edited")
            )
        if seq not in pinned.cursors and (message_id, report_id) not in pinned.legacy:
            problems.append(
                Problem(
                    None,
                    message_id,
                    f"report {report_id!r} (cursor {seq}) is not pinned by any 'reported' event: inserted, moved"
                    " or renumbered behind the journal, or its event deleted",
                )
            )
    for table, what in (
        ("events", "its events remain"),
        ("refs", "its refs remain"),
        ("reports", "its reports remain"),
    ):
        orphans = reader.conn.execute(
            f"SELECT DISTINCT message_id FROM {table} WHERE message_id NOT IN (SELECT id FROM messages)"
        )
        for (message_id,) in orphans:
            problems.append(Problem(None, message_id, f"message row deleted: {what}"))
    return count


def _verdict_digest(text: Any) -> str | None:
    """The digest of the stored verdict's JSON value (a reformatted but equal verdict is not an edit)."""
    value = _parse(text)
    if value is _UNREADABLE:
        return None
    try:
        return verdict_digest(canonical_json(value))
    except (TypeError, ValueError):
        return None


def _check_pinned_report(
    reader: Reader, seq: int, message_id: str, detail: dict[str, Any], pin: dict[str, Any], problems: list[Problem]
) -> None:
    cursor = pin["cursor"]
    name = f"report {pin.get('report_id')!r} (cursor {cursor})"
    row = reader.conn.execute(
        f"SELECT message_id, xml, {', '.join(REPORT_PINNED)} FROM reports WHERE seq = ?", (cursor,)
    ).fetchone()
    if row is None:
        problems.append(Problem(seq, message_id, f"{name} is missing: deleted or renumbered"))
        return
    if row[0] != message_id:
        problems.append(Problem(seq, message_id, f"{name} was moved to message {row[0]!r}"))
    if hashlib.sha256(row[1]).hexdigest() != detail.get("sha256"):
        problems.append(Problem(seq, message_id, f"{name} XML edited"))
    for column, value in zip(REPORT_PINNED, row[2:], strict=True):
        if pin.get(column) != value:
            problems.append(
                Problem(
                    seq,
                    message_id,
                    f"{name} {column} edited: the row has {value!r}, the event pinned {pin.get(column)!r}",
                )
            )


def _check_report(reader: Reader, seq: int, message_id: str, detail: dict[str, Any], problems: list[Problem]) -> None:
    row = reader.conn.execute(
        "SELECT xml FROM reports WHERE message_id = ? AND report_id = ? ORDER BY seq DESC LIMIT 1",
        (message_id, detail.get("report_id")),
    ).fetchone()
    if row is None:
        problems.append(Problem(seq, message_id, f"report {detail.get('report_id')!r} is missing: deleted"))
    elif hashlib.sha256(row[0]).hexdigest() != detail["sha256"]:
        problems.append(Problem(seq, message_id, f"report {detail.get('report_id')!r} XML edited"))


# The events that settle an attempt: the outcome each writes into the attempts row and the detail key holding what
# it writes into the row's `detail` (outbox.finish_attempt, outbox.recover_inflight, which leaves `detail` NULL).
# A `delivery_failed` with "sent": false settles no attempt: that part's bytes could not even be built.
_SETTLED: dict[str, tuple[str, str | None]] = {
    "delivered": ("delivered", "receipt"),
    "attempt_failed": ("retry", "error"),
    "delivery_failed": ("failed", "error"),
    "attempt_unknown": ("unknown", None),
}
_ATTEMPT_EVENTS = ("attempt", *_SETTLED)
# Both sides of the comparison sorted by (outbox id, attempt) and merged: two streams, no query per row and no map
# of the whole journal in memory (SQLite's sorter spills to disk). Attempts rows are fetched one at a time: a single
# payload is in memory, however large the journal. Text sorts alike in both (BINARY collation, UTF-8 byte order =
# Python's code point order). An event whose detail is not JSON (named by the chain walk) cannot name a row.
_ATTEMPTS = """
SELECT a.outbox_id, a.attempt, a.started_at, a.sha256, a.key_label, a.possible_duplicate, a.outcome, a.finished_at,
  a.detail, o.id IS NOT NULL, a.payload
FROM attempts a LEFT JOIN outbox o ON o.id = a.outbox_id ORDER BY a.outbox_id, a.attempt
"""
_EVENTS_BY_ATTEMPT = f"""
SELECT outbox_id, attempt, seq, at, kind, d FROM (
  SELECT json_extract(d, '$.outbox_id') AS outbox_id, json_extract(d, '$.attempt') AS attempt, seq, at, kind, d FROM (
    SELECT seq, at, kind, CASE WHEN json_valid(detail) THEN detail END AS d FROM events
    WHERE kind IN ({", ".join(f"'{k}'" for k in _ATTEMPT_EVENTS)})))
WHERE typeof(outbox_id) = 'text' AND typeof(attempt) = 'integer' ORDER BY outbox_id, attempt, seq
"""
# (seq, at, kind, detail) of an event about an attempt.
_AttemptEvent = tuple[int, str, str, dict[str, Any]]


def _attempt_row(oid: str, attempt: int) -> tuple[str, str]:
    """(message id, how a problem names the row): outbox ids are "<message id>.<part>" (outbox.outbox_id)."""
    message_id, dot, part = oid.rpartition(".")
    if not dot:
        return oid, f"attempt {attempt} of outbox row {oid!r}"
    return message_id, f"attempt {attempt} of part {part}"


def _event_groups(reader: Reader) -> Iterator[tuple[tuple[str, int], list[_AttemptEvent]]]:
    """The events about attempts, grouped by the (outbox id, attempt) they name, in that order."""
    key: tuple[str, int] | None = None
    group: list[_AttemptEvent] = []
    for oid, attempt, seq, at, kind, text in reader.conn.execute(_EVENTS_BY_ATTEMPT):
        detail = _parse(text)
        if not isinstance(detail, dict) or (kind == "delivery_failed" and detail.get("sent") is False):
            continue  # a part whose bytes could not be built: that event settles no attempt
        if (oid, attempt) != key:
            if key is not None:
                yield key, group
            key, group = (oid, attempt), []
        group.append((seq, at, kind, detail))
    if key is not None:
        yield key, group


def _check_attempts(reader: Reader, problems: list[Problem], pinned: _PinnedReports) -> None:
    """Every attempts row against the `attempt` event that pinned its bytes and the event that settled it, and
    every such event against its row."""
    groups = _event_groups(reader)
    pending = next(groups, None)
    for row in reader.conn.execute(_ATTEMPTS):
        key: tuple[str, int] = (row[0], row[1])
        while pending is not None and pending[0] < key:
            _missing_row(*pending, problems)
            pending = next(groups, None)
        events: list[_AttemptEvent] = []
        if pending is not None and pending[0] == key:
            events, pending = pending[1], next(groups, None)
        message_id, name = _attempt_row(*key)
        findings = [] if row[9] else ["its outbox row is missing: deleted or renumbered"]
        findings += _attempt_findings(row[2:9], row[10], [e for e in events if e[2] == "attempt"], pinned)
        findings += _settled_findings(row[6:9], [e for e in events if e[2] != "attempt"], pinned)
        problems.extend(Problem(None, message_id, f"{name}: {what}") for what in findings)
    while pending is not None:
        _missing_row(*pending, problems)
        pending = next(groups, None)


def _missing_row(key: tuple[str, int], events: list[_AttemptEvent], problems: list[Problem]) -> None:
    """Events name an attempt that has no row: the bytes they say were handed to a bank are gone."""
    message_id, name = _attempt_row(*key)
    seq, _, kind, _ = next((e for e in events if e[2] == "attempt"), events[0])
    problems.append(
        Problem(
            None,
            message_id,
            f"{name}: its attempts row (the bytes sent) is missing while its {kind!r} event {seq} remains:"
            " deleted or renumbered",
        )
    )


def _attempt_findings(
    columns: Sequence[Any], payload: Any, started: list[_AttemptEvent], pinned: _PinnedReports
) -> list[str]:
    started_at, column_sha, key_label, possible_duplicate = columns[:4]
    actual = hashlib.sha256(payload).hexdigest() if isinstance(payload, bytes) else None
    if not started:
        out = [
            "no 'attempt' event pins this row (the bytes it says were sent): inserted or renumbered behind the"
            " journal, or its event deleted"
        ]
        if actual != column_sha:
            out.append("payload (the bytes sent) does not match its sha256 column: edited")
        return out
    out = [f"{len(started)} 'attempt' events name it: {', '.join(str(e[0]) for e in started)}"] if started[1:] else []
    seq, at, _, pin = started[0]
    if seq in pinned.edited_seqs:
        return out  # the chain walk named the edited event; comparing the row with it would mislead
    where = f"its 'attempt' event {seq}"
    if actual != pin.get("sha256"):
        out.append(f"payload (the bytes sent) edited: it does not match the sha256 in {where}")
    elif column_sha != actual:
        out.append(f"the sha256 column was edited: {where} pins the payload's actual sha256")
    if key_label != pin.get("key_label"):
        out.append(f"key_label edited: the row has {key_label!r}, {where} pinned {pin.get('key_label')!r}")
    if started_at != at:
        out.append(f"started_at edited: the row has {started_at!r}, {where} is at {at!r}")
    flagged = bool(pin.get("possible_duplicate", False))
    if bool(possible_duplicate) != flagged:
        out.append(f"possible_duplicate edited: the row has {bool(possible_duplicate)}, {where} pinned {flagged}")
    return out


def _settled_findings(stored: Sequence[Any], settled: list[_AttemptEvent], pinned: _PinnedReports) -> list[str]:
    """The row's outcome, finished_at and detail are what the event that settled the attempt wrote (none yet: all
    NULL, the attempt is in flight). Only the outbox settles an attempt, once: more events name a forgery."""
    out = [f"settled {len(settled)} times: events {', '.join(str(e[0]) for e in settled)}"] if settled[1:] else []
    if settled:
        seq, at, kind, pin = settled[0]
        if seq in pinned.edited_seqs:
            return out
        outcome, detail_key = _SETTLED[kind]
        expected: tuple[Any, ...] = (outcome, at, pin.get(detail_key) if detail_key is not None else None)
        where = f"its {kind!r} event {seq}"
    else:
        expected, where = (None, None, None), "the chain, which records no settlement (in flight)"
    for column, value, want in zip(("outcome", "finished_at", "detail"), stored, expected, strict=True):
        if value != want:
            out.append(f"{column} edited: the row has {value!r}, {where} says {want!r}")
    return out


def _check_anchor(reader: Reader, anchor: tuple[int, str], problems: list[Problem]) -> None:
    seq, expected = anchor
    row = reader.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        problems.append(Problem(seq, None, "the anchored event is missing"))
    elif row[0] != expected:
        problems.append(Problem(seq, None, "the anchored event's hash differs: the chain was rewritten"))


def _rehash(prev_hash: str, seq: Any, message_id: Any, at: Any, kind: Any, detail: Any) -> str | None:
    """The hash the event should have, or None when its stored form cannot even be hashed (edited by hand)."""
    try:
        return event_hash(prev_hash, seq, message_id, at, kind, canonical_json(detail))
    except (TypeError, ValueError):
        return None


_UNREADABLE = object()


def _parse(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return _UNREADABLE
