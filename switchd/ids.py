"""Identifiers minted by switchd: time-sortable message ids and the MsgIds of the reports we author."""

from __future__ import annotations

import secrets
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def _b32(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 32)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_message_id(now: datetime) -> str:
    """26 characters, sortable by time (ms), 80 random bits: 'M' + 10 time chars + 16 random chars - 1."""
    ms = int(now.timestamp() * 1000)
    return "M" + _b32(ms, 10) + _b32(secrets.randbits(75), 15)


def report_msg_id(message_id: str) -> str:
    """The MsgId of a status report switchd authors about `message_id` (Max35Text)."""
    return ("SWD" + message_id)[:35]
