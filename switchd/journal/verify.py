"""Tamper evidence check: walk the hash chain and re-hash every raw message, naming each row that is wrong.

What it proves: since the chain head (or the `anchor` kept elsewhere), no event was edited, deleted, inserted or
reordered, the tail was not cut off, and every message's raw bytes are the ones its `received` event pinned. For
messages written with the journal's own pins (pins.py): the message row's fixed columns, verdict and refs are the
ones pinned at intake, its state is the last one pinned, and every report row (XML and columns) is the one its
`reported` event pinned, with no report row that no event pins.
What it cannot prove on its own: someone with write access who recomputes every later hash and the chain head
leaves a consistent chain; only an anchor kept outside the database (`VerifyResult.head`) catches that.
"""

from __future__ import annotations

import hashlib
import json
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
        elif recomputed != stored:
            problems.append(Problem(seq, message_id, f"{kind!r} event content does not match its hash: edited"))
            pinned.edited.add(message_id)
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
