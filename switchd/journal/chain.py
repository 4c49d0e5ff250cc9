"""The event hash chain: canonical bytes of an event and how each event's hash links to the one before it.

    hash(seq) = sha256(bytes.fromhex(prev_hash) || canonical([seq, message_id, at, kind, detail]))

`canonical` is compact JSON with sorted keys, UTF-8, no NaN. The first event links to GENESIS. The chain is global
(all messages, ordered by seq), so deleting, inserting or reordering any event breaks a link, and the one-row
`chain_head` table (last seq and hash, written in the same transaction) shows a truncated tail.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


# One encoder for the process: json.dumps with non-default options builds a new JSONEncoder on every call, which was
# a third of canonical_json's cost on the write path (7+ calls per message). encode() keeps no state between calls.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """The one JSON spelling used for stored details and for hashing. Raises ValueError/TypeError if not JSON-able."""
    return _ENCODER.encode(value)


def event_hash(prev_hash: str, seq: int, message_id: str, at: str, kind: str, detail_json: str) -> str:
    """The hash of one event; `detail_json` must already be `canonical_json(detail)`."""
    # Same bytes as canonical_json([seq, message_id, at, kind, detail]) without decoding the detail again.
    head = canonical_json([seq, message_id, at, kind])
    body = f"{head[:-1]},{detail_json}]".encode()
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()
