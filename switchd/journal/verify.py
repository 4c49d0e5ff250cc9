"""Tamper evidence check: walk the hash chain and re-hash every raw message, naming each row that is wrong.

What it proves: since the chain head (or the `anchor` kept elsewhere), no event was edited, deleted, inserted or
reordered, the tail was not cut off, and every message's raw bytes are the ones its `received` event pinned.
What it cannot prove on its own: someone with write access who recomputes every later hash and the chain head
leaves a consistent chain; only an anchor kept outside the database (`VerifyResult.head`) catches that.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from switchd.journal.chain import GENESIS, canonical_json, event_hash
from switchd.journal.reads import Reader
from switchd.journal.records import Problem, VerifyResult


def verify(reader: Reader, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Check the whole journal in one read snapshot. Never raises for what it finds: every finding is a Problem."""
    problems: list[Problem] = []
    with reader.snapshot():
        checked, last_seq, last_hash = _walk_chain(reader, problems)
        head = _check_head(reader, last_seq, last_hash, problems)
        messages = _check_messages(reader, problems)
        if anchor is not None:
            _check_anchor(reader, anchor, problems)
    return VerifyResult(ok=not problems, checked=checked, problems=problems, messages=messages, head=head)


def _walk_chain(reader: Reader, problems: list[Problem]) -> tuple[int, int, str]:
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
        elif recomputed != stored:
            problems.append(Problem(seq, message_id, f"{kind!r} event content does not match its hash: edited"))
        elif kind == "reported" and isinstance(detail, dict) and "sha256" in detail:
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


def _check_messages(reader: Reader, problems: list[Problem]) -> int:
    count = 0
    rows = reader.conn.execute(
        "SELECT m.id, m.sha256, m.raw, "
        "  (SELECT e.seq FROM events e WHERE e.message_id = m.id AND e.kind = 'received' ORDER BY e.seq LIMIT 1),"
        "  (SELECT e.detail FROM events e WHERE e.message_id = m.id AND e.kind = 'received' ORDER BY e.seq LIMIT 1)"
        " FROM messages m ORDER BY m.id"
    )
    for message_id, column_sha, raw, received_seq, received_detail in rows:
        count += 1
        actual = hashlib.sha256(raw).hexdigest()
        if actual != column_sha:
            problems.append(Problem(None, message_id, "raw bytes do not match the message's sha256: raw edited"))
        detail = _parse(received_detail)
        pinned = detail.get("sha256") if isinstance(detail, dict) else None
        if pinned is None:
            problems.append(Problem(None, message_id, "no 'received' event pinning the raw bytes' sha256"))
        elif pinned != actual:
            problems.append(
                Problem(None, message_id, f"raw bytes do not match the sha256 in its 'received' event {received_seq}")
            )
        elif column_sha != pinned:
            problems.append(Problem(None, message_id, "the sha256 column was edited"))
    # Reports stored with their message are pinned only by their own digest column (the caller's `reported` event
    # may not carry the sha256): this catches a careless edit, not a careful one. add_report() pins it in the chain.
    for seq, message_id, report_id, digest, xml in reader.conn.execute(
        "SELECT seq, message_id, report_id, sha256, xml FROM reports ORDER BY seq"
    ):
        if hashlib.sha256(xml).hexdigest() != digest:
            problems.append(
                Problem(None, message_id, f"report {report_id!r} (cursor {seq}) XML does not match its sha256: edited")
            )
    orphans = reader.conn.execute(
        "SELECT DISTINCT message_id FROM events WHERE message_id NOT IN (SELECT id FROM messages)"
    )
    for (message_id,) in orphans:
        problems.append(Problem(None, message_id, "message row deleted: its events remain"))
    return count


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
