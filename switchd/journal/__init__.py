"""The journal: the only code that touches SQLite. Messages, events (a global hash chain), refs and reports.

See core.py for the Journal, writer.py for group commit, chain.py and verify.py for tamper evidence.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from switchd.journal.records import (
    AttemptRow,
    CommitResult,
    Conflict,
    Event,
    EventRow,
    Idempotent,
    InboundRecord,
    JournalStatistics,
    MessageRow,
    OutboxEntry,
    OutboxRow,
    Problem,
    ReportRecord,
    ReportRow,
    Stored,
    VerifyResult,
)

if TYPE_CHECKING:
    from switchd.journal.core import Journal, open_journal
    from switchd.journal.outbox import OutboxConflict
    from switchd.journal.reads import MessageNotFound, RelatedRow
    from switchd.journal.schema import SCHEMA_VERSION

# Imported on first use (PEP 562): the intake worker processes need only the records (plain dataclasses), and
# sqlite-utils with the journal's own modules cost them ~0.15 s of start-up each.
_LAZY = {
    "Journal": "switchd.journal.core",
    "open_journal": "switchd.journal.core",
    "OutboxConflict": "switchd.journal.outbox",
    "MessageNotFound": "switchd.journal.reads",
    "RelatedRow": "switchd.journal.reads",
    "SCHEMA_VERSION": "switchd.journal.schema",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "SCHEMA_VERSION",
    "AttemptRow",
    "CommitResult",
    "Conflict",
    "Event",
    "EventRow",
    "Idempotent",
    "InboundRecord",
    "Journal",
    "JournalStatistics",
    "MessageNotFound",
    "MessageRow",
    "OutboxConflict",
    "OutboxEntry",
    "OutboxRow",
    "Problem",
    "RelatedRow",
    "ReportRecord",
    "ReportRow",
    "Stored",
    "VerifyResult",
    "open_journal",
]
