"""Identifiers minted by switchd: time-sortable message ids and the MsgIds of the reports we author."""

from __future__ import annotations

import os
import random
from datetime import datetime

# Ids must be unique, not secret (access is by participant, never by knowing an id): a PRNG seeded from the OS
# costs ~0.3 us where secrets.token_bytes costs a getrandom() syscall per id. Reseeded in forked children so two
# processes never share a sequence.
_RANDOM = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _RANDOM.seed(os.urandom(32)))


def new_message_id(now: datetime) -> str:
    """'M' + 12 hex digits of milliseconds + 20 random hex digits (80 bits): 33 characters, sorting like the time."""
    ms = int(now.timestamp() * 1000)
    return f"M{ms:012x}{_RANDOM.getrandbits(80):020x}"


def report_msg_id(message_id: str) -> str:
    """The MsgId of a status report switchd authors about `message_id` (Max35Text)."""
    return ("SWD" + message_id)[:35]
