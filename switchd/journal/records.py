"""The journal's vocabulary: what callers hand it (records), what it answers (outcomes, rows, verify results)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# An event as callers write it: (kind, detail). The detail's optional "at" key (RFC 3339 UTC) is the event's time;
# the journal moves it into the event's own `at` column and never reads a clock itself.
Event = tuple[str, dict[str, Any]]

INTAKE_STATES = ("accepted", "rejected")


@dataclass(frozen=True)
class ReportRecord:
    """A status report (pacs.002 / pain.002) produced for a message, ready to store."""

    report_id: str
    message_type: str  # e.g. "pacs.002.001.10"
    msg_id: str
    status: str  # group status, e.g. "RJCT"
    xml: bytes
    created_at: str


@dataclass(frozen=True)
class OutboxEntry:
    """One outbound part of an accepted message, decided by routing and written in the accepting transaction.

    `tx_indexes` are the original's transactions this part carries (all of them when the message is not split);
    `msg_id` is the part's GrpHdr/MsgId (the original's when not split); `deadline_at` (RFC 3339 UTC) is when the
    originator must hear back at the latest (instant payments), None for no deadline.
    """

    part: int
    connector: str
    route: str
    msg_id: str
    tx_indexes: tuple[int, ...]
    deadline_at: str | None = None
    possible_duplicate: bool = False


@dataclass(frozen=True)
class OutboxRow:
    """An outbox row as stored. `state`: pending, sending, delivered, failed (gave up), expired (deadline passed
    before it was sent). `answer`: the bank's group status once one came back, "TIMEOUT" when the deadline passed
    first. `payload` is the unsigned outbound envelope once built (at the first attempt)."""

    id: str
    message_id: str
    part: int
    connector: str
    route: str
    msg_id: str
    tx_indexes: tuple[int, ...]
    state: str
    attempts: int
    next_at: str
    deadline_at: str | None
    possible_duplicate: bool
    created_at: str
    updated_at: str
    last_error: str | None
    receipt: str | None
    answer: str | None
    payload: bytes | None


@dataclass(frozen=True)
class AttemptRow:
    """One delivery attempt: the exact bytes handed to the connector and what came of it."""

    outbox_id: str
    attempt: int
    started_at: str
    payload: bytes
    sha256: str
    key_label: str | None
    possible_duplicate: bool
    outcome: str | None  # delivered, retry, failed, unknown (the daemon died during it); None while running
    finished_at: str | None
    detail: str | None


@dataclass(frozen=True)
class InboundRecord:
    """Everything decided about one inbound message, committed in one transaction by `commit_inbound`.

    `events[0]` must be ("received", {..., "sha256": sha256}) so the raw bytes are pinned in the hash chain.
    Events without "at" in their detail take `received_at`.
    """

    id: str  # opaque, minted by the caller (time-sortable string)
    participant: str
    channel: str  # "http" | "sftp" | "session"
    channel_ref: str | None
    received_at: str  # RFC 3339 UTC with microseconds, from the caller's clock
    raw: bytes
    sha256: str  # hex sha256 of raw
    message_type: str | None  # "pacs.008.001.08"; None when unparseable
    family: str | None  # "pacs.008"
    msg_id: str | None
    state: str  # "accepted" | "rejected"
    http_status: int
    verdict: dict[str, Any]
    refs: tuple[tuple[str, str], ...]  # ("end_to_end_id", v), ("uetr", v), ("tx_id", v), ...
    events: tuple[Event, ...]
    report: ReportRecord | None
    outbox: tuple[OutboxEntry, ...] = ()  # only for an accepted message: where it goes, written in the same commit


@dataclass(frozen=True)
class MessageRow:
    """A stored message without its raw bytes (`Journal.raw(id)` has those)."""

    id: str
    participant: str
    channel: str
    channel_ref: str | None
    received_at: str
    message_type: str | None
    family: str | None
    msg_id: str | None
    state: str
    http_status: int
    verdict: dict[str, Any]
    sha256: str


@dataclass(frozen=True)
class EventRow:
    """One link of the global hash chain: `seq` orders all events of all messages."""

    seq: int
    message_id: str
    at: str
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ReportRow:
    """A stored status report; `seq` is the paging cursor (increases with every report, never reused)."""

    seq: int
    message_id: str
    participant: str
    report_id: str
    message_type: str
    msg_id: str
    status: str
    created_at: str
    xml: bytes


@dataclass(frozen=True)
class Stored:
    """The message, its refs, events and report were written."""

    id: str


@dataclass(frozen=True)
class Idempotent:
    """An identical accepted message already holds the (participant, family, msg_id) key: only a
    `resubmitted` event was added to `original`."""

    original: MessageRow


@dataclass(frozen=True)
class Conflict:
    """An accepted message with different content holds the key: nothing was written."""

    original: MessageRow


CommitResult = Stored | Idempotent | Conflict


@dataclass(frozen=True)
class Problem:
    """One thing `verify` found wrong, naming the event (`seq`) or the message (`message_id`)."""

    seq: int | None
    message_id: str | None
    what: str

    def __str__(self) -> str:
        where = f"event {self.seq}" if self.seq is not None else f"message {self.message_id}"
        return f"{where}: {self.what}"


@dataclass(frozen=True)
class VerifyResult:
    """`checked` events and `messages` messages were checked; `head` is the chain head (seq, hash) seen, worth
    keeping outside the database as an anchor for a later `verify(anchor=...)`."""

    ok: bool
    checked: int
    problems: list[Problem] = field(default_factory=list)
    messages: int = 0
    head: tuple[int, str] | None = None


@dataclass(frozen=True)
class JournalStatistics:
    """Writer counters since `start()`: `commits` transactions (one fsync each) carried `ops` operations."""

    commits: int = 0
    ops: int = 0
    failed_ops: int = 0  # ops whose awaiter got an exception (its own, or its whole batch failing)
    failed_batches: int = 0  # transactions that could not commit
    largest_batch: int = 0
    wakeups: int = 0  # hops back into trio: one per batch
    queued: int = 0  # ops waiting for the writer right now
