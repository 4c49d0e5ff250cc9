"""`switchctl show`: the messages related to the one shown (journal.related) and one history merging their events.

A return, cancellation or resolution is named beside the payment it is about, and its main events appear in that
payment's history in time order, marked with the message they come from (and the other way round).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # switchctl imports this for every command: the journal only where a command opens it
    from switchd.journal import EventRow, Journal, MessageRow, RelatedRow

# What a message does to the original it names, by family.
VERBS = {
    "pacs.004": "returns",
    "camt.056": "cancels",
    "camt.029": "answers",
    "pacs.028": "asks about",
    "pacs.002": "reports on",
    "pain.002": "reports on",
}
# How a message that refers to the one shown is called, by family.
NOUNS = {
    "pacs.004": "return",
    "camt.056": "cancellation request",
    "camt.029": "resolution",
    "pacs.028": "status request",
}
# A related message's events that are not worth a line in another message's history: its own validation and
# attempt bookkeeping. A report's events are never merged: the original's status_received already tells them.
MINOR_EVENTS = frozenset({"validated", "attempt", "correlated"})
ORIGINAL_REF_KINDS = ("original_msg_id", "original_end_to_end_id", "original_uetr")
_REF_LABELS = {
    "original_msg_id": "OrgnlMsgId",
    "original_end_to_end_id": "OrgnlEndToEndId",
    "original_uetr": "OrgnlUETR",
}


@dataclass(frozen=True)
class HistoryLine:
    """One event of the merged history; `source` is None for the shown message's own events."""

    event: EventRow
    source: RelatedRow | None


def refers_to(refs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The ids a message names as its original's ({kind: values}); empty for a message about nothing earlier."""
    out: dict[str, list[str]] = {kind: [] for kind in ORIGINAL_REF_KINDS}
    for kind, value in refs:
        if kind in out:
            out[kind].append(value)
    return {kind: values for kind, values in out.items() if values}


def history(journal: Journal, own: Sequence[EventRow], related: Sequence[RelatedRow]) -> list[HistoryLine]:
    """The shown message's events and the main events of the related messages (not reports), in time order."""
    streams = [[HistoryLine(e, None) for e in own]]
    for rel in related:
        if rel.relation != "report":
            streams.append([HistoryLine(e, rel) for e in journal.events(rel.message.id) if e.kind not in MINOR_EVENTS])
    # Each message's events stay in their chain order (an event's time may be a little before its predecessor's,
    # e.g. a report created before the answer it forwards was journaled); the streams interleave by time. Times
    # are RFC 3339 UTC in one spelling, so text order is time order; on a tie the shown message comes first.
    return list(heapq.merge(*streams, key=lambda h: h.event.at))


def relation_label(rel: RelatedRow) -> str:
    row = rel.message
    if rel.relation == "referrer":
        return NOUNS.get(row.family or "", "refers to it")
    if rel.relation == "sibling":
        return f"{NOUNS.get(row.family or '', 'message')} of the same original"
    if rel.relation == "report":
        return "status report"
    return "original"


def source_label(rel: RelatedRow | None) -> str:
    if rel is None:
        return ""
    return f"{rel.message.family or '?'} {rel.message.id}"


def print_originals(row: MessageRow, related: Sequence[RelatedRow], named: dict[str, list[str]]) -> None:
    """The line(s) naming what the shown message returns / cancels / answers, or that nothing matches."""
    originals = [r.message for r in related if r.relation == "original"]
    verb = VERBS.get(row.family or "", "refers to")
    for o in originals:
        print(f"{verb:<9} {o.id} ({o.message_type or '-'}, MsgId {o.msg_id or '-'}, from {o.participant}, {o.state})")
    if named and not originals:
        ids = "; ".join(f"{_REF_LABELS[k]} {', '.join(v)}" for k, v in named.items())
        print(f"original  no original found ({ids})")


def related_rows(related: Sequence[RelatedRow]) -> list[tuple[Any, ...]]:
    """Rows of the "related" table: relation, id, type, MsgId, from, state, received."""
    return [
        (
            relation_label(r),
            r.message.id,
            r.message.message_type or "-",
            r.message.msg_id or "-",
            r.message.participant,
            r.message.state,
            r.message.received_at,
        )
        for r in related
    ]


def related_json(related: Sequence[RelatedRow]) -> list[dict[str, Any]]:
    return [
        {
            "relation": r.relation,
            "label": relation_label(r),
            "id": r.message.id,
            "message_type": r.message.message_type,
            "msg_id": r.message.msg_id,
            "participant": r.message.participant,
            "state": r.message.state,
            "received_at": r.message.received_at,
            "via": list(r.via),
        }
        for r in related
    ]


def history_json(lines: Sequence[HistoryLine]) -> list[dict[str, Any]]:
    return [
        {
            "seq": h.event.seq,
            "at": h.event.at,
            "kind": h.event.kind,
            "message_id": h.event.message_id,
            "related": h.source.relation if h.source is not None else None,
            "detail": h.event.detail,
        }
        for h in lines
    ]
