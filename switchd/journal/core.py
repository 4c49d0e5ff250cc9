"""The Journal: durable, hash-chained record of every message, its events and reports (the only SQLite user).

Writes are async and group-committed by one writer thread (writer.py); reads are sync, one connection per reading
thread. `Journal.open(path, readonly=True)` has no writer: switchctl uses it offline, beside a running daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from switchd.errors import JournalError
from switchd.journal import outbox, writes
from switchd.journal.reads import Reader, ReaderPool, RelatedRow
from switchd.journal.records import (
    AttemptRow,
    CommitResult,
    Event,
    EventRow,
    InboundRecord,
    JournalStatistics,
    MessageRow,
    OutboxEntry,
    OutboxRow,
    ReportRecord,
    ReportRow,
    Stored,
    VerifyResult,
)
from switchd.journal.schema import check_version, connect_reader, connect_writer, migrate
from switchd.journal.verify import verify
from switchd.journal.writer import DEFAULT_BATCH_CAP, DEFAULT_COMMIT_DELAY, Writer


class Journal:
    """Open with `Journal.open` (sync); `await start()` before writing; `await aclose()` (or `close()` when never
    started or read-only) at the end. `open_journal` does all three."""

    def __init__(self, path: Path, readers: ReaderPool, writer: Writer | None) -> None:
        self.path = path
        self.readonly = writer is None
        self._readers = readers
        self._writer = writer

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        readonly: bool = False,
        batch_cap: int = DEFAULT_BATCH_CAP,
        commit_delay: float = DEFAULT_COMMIT_DELAY,
    ) -> Journal:
        """Open (read-write: create and migrate) the journal at `path`. Blocking: in trio, call it in a thread.

        Raises JournalError if the file cannot be opened, is not a journal, has a newer schema, or (read-only) is
        missing or not yet migrated. `batch_cap` bounds the operations of one transaction; `commit_delay` (seconds)
        is how long the writer waits for more of them under load (0: never; see writer.py).
        """
        path = Path(path)
        if readonly:
            conn = connect_reader(path)
            try:
                check_version(conn, path)
            finally:
                conn.close()
            return cls(path, ReaderPool(path), None)
        conn = connect_writer(path)
        try:
            migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(path, ReaderPool(path), Writer(conn, path, batch_cap, commit_delay))

    # --- life cycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer thread (it wakes the current trio run). Raises JournalError if read-only or started."""
        self._require_writer().start()

    async def aclose(self) -> None:
        """Stop taking writes, wait until everything queued is committed, close every connection. Idempotent."""
        try:
            if self._writer is not None:
                self._writer.stop()
                # Shielded: even a cancelled caller must not leave before the queued writes are settled.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._writer.join)
        finally:
            self._readers.close()

    def close(self) -> None:
        """Sync close for a journal whose writer never started (read-only, switchctl). Else use `aclose`."""
        if self._writer is not None:
            self._writer.stop()
            self._writer.join()
        self._readers.close()

    def statistics(self) -> JournalStatistics:
        """Writer counters: commits, ops, failed_ops, largest_batch, wakeups, queued (all zero when read-only)."""
        return self._writer.statistics() if self._writer is not None else JournalStatistics()

    # --- writes (async, durable when they return) ----------------------------------------------------------

    async def commit_inbound(self, record: InboundRecord) -> CommitResult:
        """Store an inbound message with its refs, events and report, or find the accepted message holding its
        (participant, family, msg_id) key: `Stored`, `Idempotent` (only a `resubmitted` event added to the
        original) or `Conflict` (nothing written). Durable when it returns.

        Raises ValueError for a malformed record (bad state, sha256, no leading `received` event with the sha256,
        an event without a time), JournalError if the write fails (e.g. the id exists); nothing is stored then.
        """
        writer = self._require_writer()
        events = writes.timed(record.events, record.received_at)
        if record.outbox and record.state != "accepted":
            raise ValueError(f"{record.id}: only an accepted message has outbox entries")

        def apply(tx: writes.Tx) -> CommitResult:
            result = writes.store_inbound(tx, record, events)
            if isinstance(result, Stored) and record.outbox:
                # Same transaction as the acceptance: an accepted message always has its way out.
                tx.add_events(record.id, outbox.insert_entries(tx, record.id, record.outbox, events[-1][0]))
            return result

        return await writer.submit(apply)

    async def append_events(
        self,
        message_id: str,
        events: Sequence[Event],
        new_state: str | None = None,
        *,
        at: str | None = None,
    ) -> None:
        """Chain `events` to the message and optionally move it to `new_state`, in one transaction.

        Each event's time is its detail's "at", else `at`. Raises ValueError (no events, an event without a time),
        MessageNotFound (a JournalError) for an unknown message; nothing is stored then.
        """
        writer = self._require_writer()
        if not events:
            raise ValueError("append_events needs at least one event: every state change is an event")
        timed = writes.timed(events, at)
        await writer.submit(lambda tx: writes.append_events(tx, message_id, timed, new_state))

    async def add_report(self, message_id: str, report: ReportRecord, participant: str) -> int:
        """Store a status report for `participant` (whose `reports()` feed it joins) and chain a `reported` event
        (at report.created_at) pinning the XML's sha256. Returns the report's cursor. Raises MessageNotFound."""
        writer = self._require_writer()
        return await writer.submit(lambda tx: writes.add_report(tx, message_id, report, participant))

    # --- outbox (see outbox.py) ---------------------------------------------------------------------------

    async def begin_attempt(
        self, oid: str, at: str, payload: bytes, unsigned: bytes | None, key_label: str | None
    ) -> tuple[int, bool]:
        """Durably record the attempt before the bytes leave; (attempt number, possible_duplicate)."""
        return await self._require_writer().submit(
            lambda tx: outbox.begin_attempt(tx, oid, at, payload, unsigned, key_label)
        )

    async def finish_attempt(
        self,
        oid: str,
        attempt: int,
        at: str,
        *,
        outcome: str,
        detail: str | None,
        retry_at: str | None = None,
        report: ReportRecord | None = None,
        originator: str | None = None,
    ) -> None:
        await self._require_writer().submit(
            lambda tx: outbox.finish_attempt(
                tx,
                oid,
                attempt,
                at,
                outcome=outcome,
                detail=detail,
                retry_at=retry_at,
                report=report,
                originator=originator,
            )
        )

    async def recover_inflight(self, at: str) -> list[str]:
        return await self._require_writer().submit(lambda tx: outbox.recover_inflight(tx, at))

    async def record_answer(
        self,
        oid: str,
        at: str,
        *,
        report_message_id: str,
        status: str,
        transactions: Sequence[dict[str, Any]],
        forward: ReportRecord | None,
        originator: str,
    ) -> bool:
        return await self._require_writer().submit(
            lambda tx: outbox.record_answer(
                tx,
                oid,
                at,
                report_message_id=report_message_id,
                status=status,
                transactions=transactions,
                forward=forward,
                originator=originator,
            )
        )

    async def flag_unmatched(self, report_message_id: str, at: str, why: str) -> None:
        await self._require_writer().submit(lambda tx: outbox.flag_unmatched(tx, report_message_id, at, why))

    async def record_return(
        self,
        oid: str,
        at: str,
        *,
        return_message_id: str,
        transactions: Sequence[dict[str, Any]],
        forward: ReportRecord,
        originator: str,
    ) -> None:
        await self._require_writer().submit(
            lambda tx: outbox.record_return(
                tx,
                oid,
                at,
                return_message_id=return_message_id,
                transactions=transactions,
                forward=forward,
                originator=originator,
            )
        )

    async def fail_unsent(
        self, oid: str, at: str, error: str, report: ReportRecord | None, originator: str | None
    ) -> bool:
        return await self._require_writer().submit(
            lambda tx: outbox.fail_unsent(tx, oid, at, error, report, originator)
        )

    async def time_out(self, oid: str, at: str, report: ReportRecord | None, originator: str) -> bool:
        return await self._require_writer().submit(lambda tx: outbox.time_out(tx, oid, at, report, originator))

    async def replay(
        self, message_id: str, entries: Sequence[OutboxEntry], at: str, *, operator: str, reason: str
    ) -> list[str]:
        return await self._require_writer().submit(
            lambda tx: outbox.replay(tx, message_id, entries, at, operator=operator, reason=reason)
        )

    def due(self, connector: str, now: str, limit: int = 64) -> list[OutboxRow]:
        return outbox.due(self._reader().conn, connector, now, limit)

    def next_due_at(self, connector: str) -> str | None:
        return outbox.next_due_at(self._reader().conn, connector)

    def overdue(self, now: str, limit: int = 256) -> list[OutboxRow]:
        return outbox.overdue(self._reader().conn, now, limit)

    def next_deadline(self) -> str | None:
        return outbox.next_deadline(self._reader().conn)

    def outbox(self, message_id: str) -> list[OutboxRow]:
        return outbox.for_message(self._reader().conn, message_id)

    def outbox_by_msg_id(self, msg_id: str) -> list[OutboxRow]:
        return outbox.by_msg_id(self._reader().conn, msg_id)

    def attempts(self, oid: str) -> list[AttemptRow]:
        return outbox.attempts(self._reader().conn, oid)

    def outbox_depth(self) -> dict[str, dict[str, int]]:
        return outbox.depth_by_connector(self._reader().conn)

    # --- reads (sync; from trio: trio.to_thread.run_sync) --------------------------------------------------

    def get(self, message_id: str) -> MessageRow | None:
        return self._reader().get(message_id)

    def raw(self, message_id: str) -> bytes:
        """The exact bytes received. Raises MessageNotFound."""
        return self._reader().raw(message_id)

    def resolve(self, key: str) -> list[MessageRow]:
        """Messages whose id, MsgId, UETR or EndToEndId is `key`, newest first."""
        return self._reader().resolve(key)

    def search(
        self,
        *,
        participant: str | None = None,
        message_type: str | None = None,
        state: str | None = None,
        msg_id: str | None = None,
        end_to_end_id: str | None = None,
        uetr: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]:
        """Newest first. `message_type` is a prefix ("pacs.008") or a glob ("pacs.00[28]*"); `since` is inclusive,
        `until` exclusive, both RFC 3339 UTC in the journal's spelling (compared as text)."""
        return self._reader().search(
            participant=participant,
            message_type=message_type,
            state=state,
            msg_id=msg_id,
            end_to_end_id=end_to_end_id,
            uetr=uetr,
            since=since,
            until=until,
            limit=limit,
        )

    def events(self, message_id: str) -> list[EventRow]:
        return self._reader().events(message_id)

    def refs(self, message_id: str) -> list[tuple[str, str]]:
        return self._reader().refs(message_id)

    def related(self, message_id: str) -> list[RelatedRow]:
        """The messages related to this one, oldest first: the originals a return, cancellation or resolution
        refers to, those that refer to it, its status reports, the others about the same original (see
        reads.Reader.related for the matching rules). Raises MessageNotFound."""
        return self._reader().related(message_id)

    def latest_report(self, message_id: str) -> ReportRow | None:
        return self._reader().latest_report(message_id)

    def reports(self, participant: str, after: int = 0, limit: int = 100) -> tuple[list[ReportRow], int]:
        """The participant's reports with cursor > `after`, oldest first, and the cursor to pass next time."""
        return self._reader().reports(participant, after, limit)

    def stats(self) -> dict[str, Any]:
        """Counts: messages, by_state, by_message_type ("unknown" for unparseable), events, reports, chain_head_seq."""
        return self._reader().stats()

    def chain_head(self) -> tuple[int, str]:
        """(seq, hash) of the last event: keep it outside the database to anchor a later `verify`."""
        return self._reader().chain_head()

    def verify(self, anchor: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the hash chain and re-hash every raw message; see verify.py for what it proves."""
        return verify(self._reader(), anchor)

    # --- internals -----------------------------------------------------------------------------------------

    def _reader(self) -> Reader:
        return self._readers.get()

    def _require_writer(self) -> Writer:
        if self._writer is None:
            raise JournalError(f"{self.path}: the journal is open read-only")
        return self._writer


@asynccontextmanager
async def open_journal(
    path: Path, *, batch_cap: int = DEFAULT_BATCH_CAP, commit_delay: float = DEFAULT_COMMIT_DELAY
) -> AsyncIterator[Journal]:
    """Open (creating or migrating), start the writer; on exit commit what is queued and close."""
    journal = await trio.to_thread.run_sync(lambda: Journal.open(path, batch_cap=batch_cap, commit_delay=commit_delay))
    try:
        await journal.start()
        yield journal
    finally:
        await journal.aclose()
