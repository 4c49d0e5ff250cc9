"""The journal: the only code that touches SQLite. Messages, events (a global hash chain), refs and reports.

See core.py for the Journal, writer.py for group commit, chain.py and verify.py for tamper evidence.
"""

from switchd.journal.core import Journal, open_journal
from switchd.journal.outbox import OutboxConflict
from switchd.journal.reads import MessageNotFound, RelatedRow
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
from switchd.journal.schema import SCHEMA_VERSION

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
