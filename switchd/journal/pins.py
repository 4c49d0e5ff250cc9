"""What the journal itself writes into the chain so that the message, refs and report rows are tamper-evident too.

The caller's events pin the raw bytes (the `received` event's "sha256"). On top of that the journal adds, under the
reserved detail key "journal" (callers may not use it):

    received   {"participant", "channel", "channel_ref", "received_at", "message_type", "family", "msg_id",
                "state", "http_status", "holds_key", "verdict_sha256", "refs_sha256"}: the message row's fixed
               columns as stored, the state at intake, and digests of the verdict and the refs (digests rather than
               copies: a rejected message's verdict can be long, and the refs are a set)
    a state change (`append_events` with new_state): {"state": new_state} on the last event of the call
    reported   {"cursor", "participant", "report_id", "message_type", "msg_id", "status", "created_at"}, and the
               XML's sha256 as the detail's top-level "sha256" (the spelling `add_report` always used)

So a message's current state is the "state" of its last event carrying one. Values (not one digest of the row) are
pinned so that `verify` can name the column that changed and what it was. Events written before these pins existed
have no "journal" key: their messages are checked as before (raw bytes only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from switchd.journal.chain import canonical_json

JOURNAL_KEY = "journal"

# The message columns pinned by value in the `received` event, in the order verify reports them.
MESSAGE_PINNED = (
    "participant",
    "channel",
    "channel_ref",
    "received_at",
    "message_type",
    "family",
    "msg_id",
    "http_status",
    "holds_key",
)
REPORT_PINNED = ("participant", "report_id", "message_type", "msg_id", "status", "created_at")


def verdict_digest(verdict_json: str) -> str:
    """sha256 of the verdict's canonical JSON (the stored column's spelling)."""
    return hashlib.sha256(verdict_json.encode()).hexdigest()


def refs_digest(refs: Iterable[tuple[str, str]]) -> str:
    """sha256 of the canonical JSON of the distinct (kind, value) pairs, sorted: the set the refs table holds."""
    return hashlib.sha256(canonical_json(sorted({(k, v) for k, v in refs})).encode()).hexdigest()


def message_pin(
    columns: dict[str, Any], state: str, verdict_json: str, refs: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    pin = {name: columns[name] for name in MESSAGE_PINNED}
    pin["state"] = state
    pin["verdict_sha256"] = verdict_digest(verdict_json)
    pin["refs_sha256"] = refs_digest(refs)
    return pin


def report_pin(cursor: int, columns: dict[str, Any]) -> dict[str, Any]:
    pin = {name: columns[name] for name in REPORT_PINNED}
    pin["cursor"] = cursor
    return pin
