"""Delivery: one worker per connector drains its outbox rows, with retries, backoff and a circuit breaker.

Every attempt is journaled before the bytes leave and settled after (journal/outbox.py), so a crash between the two
leaves a row the next start re-sends marked as a possible duplicate. Deadlines (instant payments) are watched by one
task: when the bank has not answered in time the originator gets a RJCT with the timeout reason code.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import trio

from hsm.errors import HsmUnavailable
from switchd.config import ConnectorConfig
from switchd.connectors import Connector, Delivery, DeliveryFailed
from switchd.journal import Journal, OutboxConflict, OutboxEntry, OutboxRow, ReportRecord
from switchd.metrics import Metrics
from switchd.timefmt import rfc3339

log = logging.getLogger("switchd.delivery")

POLL_S = 1.0  # the longest a worker sleeps without looking (replays by switchctl, retries falling due)
OFFLINE = "AB08"  # "Creditor Agent is not online": the bank could not be reached, retries exhausted
REFUSED = "AB09"  # "Error at Creditor Agent": the bank refused the bytes (a non-retryable delivery failure)
TIMEOUT = "AB06"  # "Transaction stopped due to timeout at the Instructed Agent"
HSM_PROBE_S = 5.0  # while the HSM cannot sign, each worker tries one message this often
BUILD_TRIES = 3  # a part whose bytes cannot be built this many times fails (AB09) rather than wait unseen


@dataclass(frozen=True)
class Prepared:
    """What one attempt sends: `payload` (signed when signing is on), the unsigned envelope to keep in the outbox
    the first time (None when the row has it already) and the label of the key that signed."""

    payload: bytes
    unsigned: bytes | None
    key_label: str | None
    message_type: str


class Preparer(Protocol):
    """Builds the bytes of an attempt from the row (and the journaled original). May raise to postpone the attempt
    (the HSM is down, say): nothing is sent then and the row stays pending."""

    async def prepare(self, row: OutboxRow) -> Prepared: ...


class Reporter(Protocol):
    """Builds the RJCT the originator gets when a part fails or times out; returns it with the originator's name."""

    async def rejection(
        self, message_id: str, tx_indexes: Sequence[int], code: str, detail: str, now: datetime
    ) -> tuple[ReportRecord | None, str]: ...


def backoff_s(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: the n-th retry waits a random time in [d/2, d], d = min(max, initial*2^(n-1)).

    Jitter spreads the retries of many messages that failed together, so a bank coming back is not hit by all of
    them at the same instant."""
    d = min(maximum, initial * math.pow(2, max(0, attempt - 1)))
    return d * rng.uniform(0.5, 1.0)


class Breaker:
    """Circuit breaker: `failures` consecutive failures open it for `cooldown_s`; then one probe (half-open) decides
    whether it closes again or stays open another cooldown."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and self.clock() - self.opened_at >= self.cooldown_s:
            self.state = "half_open"
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def reopens_in(self) -> float:
        return max(0.0, self.opened_at + self.cooldown_s - self.clock()) if self.state == "open" else 0.0

    def success(self) -> None:
        self.state, self.consecutive, self.probing = "closed", 0, False

    def failure(self) -> None:
        self.consecutive += 1
        self.probing = False
        if self.state == "half_open" or self.consecutive >= self.threshold:
            if self.state != "open":
                log.warning("circuit breaker open after %d consecutive failure(s)", self.consecutive)
            self.state, self.opened_at = "open", self.clock()


class ConnectorWorker:
    """Delivers one connector's outbox rows, at most `concurrency` at a time."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        connector: Connector,
        journal: Journal,
        preparer: Preparer,
        reporter: Reporter,
        metrics: Metrics,
        clock: Callable[[], datetime],
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.connector = connector
        self.journal = journal
        self.preparer = preparer
        self.reporter = reporter
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self.breaker = Breaker(cfg.breaker_failures, cfg.breaker_cooldown_s)
        self.inflight: set[str] = set()
        self.postponed: dict[str, float] = {}  # outbox id -> monotonic time before which it is not prepared again
        self.paused_until = 0.0  # monotonic: no new attempt before (the HSM could not sign)
        self.build_failures: dict[str, int] = {}  # outbox id -> times its bytes could not be built
        self.delivered = 0
        self.failed_attempts = 0
        self._wakeup = trio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def snapshot(self) -> dict[str, object]:
        return {
            "connector": self.cfg.name,
            "kind": self.cfg.kind,
            "breaker": self.breaker.state,
            "consecutive_failures": self.breaker.consecutive,
            "inflight": len(self.inflight),
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._wakeup = trio.Event()
                wait = await self._start_due(nursery)
                self.metrics.breaker_open.labels(self.cfg.name).set(int(self.breaker.state == "open"))
                with trio.move_on_after(wait):
                    await self._wakeup.wait()

    async def _start_due(self, nursery: trio.Nursery) -> float:
        """Start what is due and may start; return how long to sleep unless woken."""
        paused = self.paused_until - time.monotonic()
        if paused > 0:
            return paused
        if self.breaker.state != "closed":
            if not self.inflight and self.breaker.allow():
                rows = await self._due(1)
                if rows:
                    self._start(nursery, rows[0])
                else:
                    self.breaker.probing = False  # nothing to probe with: try again when something is due
                return POLL_S
            return max(0.05, min(POLL_S, self.breaker.reopens_in()))
        free = self.cfg.concurrency - len(self.inflight)
        if free <= 0:
            return POLL_S
        for row in await self._due(free):
            self._start(nursery, row)
        return POLL_S

    async def _due(self, n: int) -> list[OutboxRow]:
        now_mono = time.monotonic()
        self.postponed = {k: v for k, v in self.postponed.items() if v > now_mono}
        limit = n + len(self.inflight) + len(self.postponed)
        # Inline, not in a thread: an indexed read of a few rows costs less than the ~0.2-0.4 ms thread hop.
        rows = self.journal.due(self.cfg.name, rfc3339(self.clock()), limit)
        return [r for r in rows if r.id not in self.inflight and r.id not in self.postponed][:n]

    def _start(self, nursery: trio.Nursery, row: OutboxRow) -> None:
        self.inflight.add(row.id)
        nursery.start_soon(self._deliver, row)

    async def _deliver(self, row: OutboxRow) -> None:
        try:
            await self._attempt(row)
        except Exception:  # a bug here must cost this row a later retry, never the worker (and the daemon)
            log.exception("%s: delivering %s failed unexpectedly; it will be tried again", self.cfg.name, row.id)
            self.postponed[row.id] = time.monotonic() + self.cfg.backoff_max_s
        finally:
            self.inflight.discard(row.id)
            self.wake()

    async def _attempt(self, row: OutboxRow) -> None:
        name = self.cfg.name
        try:
            prepared = await self.preparer.prepare(row)
        except HsmUnavailable as e:  # nothing sent; the worker pauses (readiness says why) and then probes again
            log.warning("%s: cannot sign %s, deliveries wait for the HSM: %s", name, row.id, e)
            # The whole worker, not this row: with the HSM gone every row would fail the same way, and postponing
            # them one by one would re-read and re-prepare the whole backlog at every wake-up.
            self.paused_until = time.monotonic() + min(self.cfg.backoff_max_s, HSM_PROBE_S)
            return
        except Exception as e:  # a bug, or a message whose bytes cannot be built (or signed)
            await self._unbuildable(row, e)
            return
        try:
            attempt, dup = await self.journal.begin_attempt(
                row.id, rfc3339(self.clock()), prepared.payload, prepared.unsigned, prepared.key_label
            )
        except OutboxConflict:  # timed out or settled meanwhile
            return
        delivery = Delivery(
            outbox_id=row.id,
            message_id=row.message_id,
            message_type=prepared.message_type,
            msg_id=row.msg_id,
            payload=prepared.payload,
            attempt=attempt,
            possible_duplicate=dup,
        )
        retryable = True
        try:
            with trio.fail_after(self.cfg.attempt_timeout_s):
                receipt = await self.connector.deliver(delivery)
        except DeliveryFailed as e:
            error, retryable = e.reason, e.retryable
        except trio.TooSlowError:
            error = f"no answer from the connector within {self.cfg.attempt_timeout_s:g} s"
        except Exception as e:  # a connector bug must not stop the worker: it counts as a failed attempt
            log.exception("%s: connector raised on %s", name, row.id)
            error = f"connector error: {e!r}"
        else:
            self.breaker.success()
            self.delivered += 1
            self.metrics.delivery_attempts.labels(name, "delivered").inc()
            await self.journal.finish_attempt(
                row.id, attempt, rfc3339(self.clock()), outcome="delivered", detail=receipt
            )
            return
        self.breaker.failure()
        self.failed_attempts += 1
        await self._failed(row, attempt, error, retryable)

    async def _unbuildable(self, row: OutboxRow, exc: Exception) -> None:
        """The part's bytes could not be built. Tried again a few times (a transient fault, or a fix and restart),
        then failed for good with RJCT AB09 to the originator, journaled: never left waiting unseen."""
        name = self.cfg.name
        tries = self.build_failures.get(row.id, 0) + 1
        self.build_failures[row.id] = tries
        log.error("%s: cannot build the bytes of %s (try %d of %d): %r", name, row.id, tries, BUILD_TRIES, exc)
        if tries < BUILD_TRIES:
            self.postponed[row.id] = time.monotonic() + backoff_s(tries, self.cfg.backoff_initial_s, 30.0, self.rng)
            return
        self.build_failures.pop(row.id, None)
        now = self.clock()
        error = f"the message for {name} could not be built: {type(exc).__name__}: {exc}"
        report: ReportRecord | None = None
        originator: str | None = None
        try:
            report, originator = await self.reporter.rejection(row.message_id, row.tx_indexes, REFUSED, error, now)
        except Exception:  # the original itself may be what cannot be read: fail the part without a report
            log.exception("%s: no RJCT report for %s", name, row.id)
        if await self.journal.fail_unsent(row.id, rfc3339(now), error, report, originator):
            self.metrics.delivery_attempts.labels(name, "failed").inc()

    async def _failed(self, row: OutboxRow, attempt: int, error: str, retryable: bool) -> None:
        name = self.cfg.name
        now = self.clock()
        if retryable and attempt < self.cfg.max_attempts:
            delay = backoff_s(attempt, self.cfg.backoff_initial_s, self.cfg.backoff_max_s, self.rng)
            retry_at = rfc3339(now + timedelta(seconds=delay))
            log.info("%s: attempt %d of %s failed (%s), retry in %.1f s", name, attempt, row.id, error, delay)
            self.metrics.delivery_attempts.labels(name, "retry").inc()
            await self.journal.finish_attempt(
                row.id, attempt, rfc3339(now), outcome="retry", detail=error, retry_at=retry_at
            )
            return
        code = OFFLINE if retryable else REFUSED
        log.warning("%s: giving up on %s after %d attempt(s): %s", name, row.id, attempt, error)
        self.metrics.delivery_attempts.labels(name, "failed").inc()
        why = f"not delivered to {name} after {attempt} attempt(s): {error}"
        report, originator = await self.reporter.rejection(row.message_id, row.tx_indexes, code, why, now)
        await self.journal.finish_attempt(
            row.id,
            attempt,
            rfc3339(now),
            outcome="failed",
            detail=error,
            report=report,
            originator=originator,
        )


class DeadlineWatch:
    """Times out parts whose deadline passed without an answer: RJCT (AB06) to the originator."""

    def __init__(self, journal: Journal, reporter: Reporter, clock: Callable[[], datetime]) -> None:
        self.journal = journal
        self.reporter = reporter
        self.clock = clock
        self.timed_out = 0
        self._wakeup = trio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def _read(self, now: str) -> tuple[list[OutboxRow], str | None]:
        """One thread hop for both: the parts overdue now, and the next deadline to sleep until."""
        return self.journal.overdue(now), self.journal.next_deadline()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wakeup = trio.Event()
            now = self.clock()
            overdue, nxt = self._read(rfc3339(now))  # two indexed reads: cheaper inline than a thread hop
            for row in overdue:
                why = f"no answer from {row.connector} by the deadline {row.deadline_at}"
                try:
                    report, originator = await self.reporter.rejection(
                        row.message_id, row.tx_indexes, TIMEOUT, why, now
                    )
                    if await self.journal.time_out(row.id, rfc3339(self.clock()), report, originator):
                        self.timed_out += 1
                        log.warning("%s timed out: %s", row.id, why)
                except Exception:  # one row's bug must not stop the watch (or the daemon): the next loop retries
                    log.exception("timing out %s failed", row.id)
            wait = POLL_S
            if nxt is not None:
                wait = min(POLL_S, max(0.01, (datetime.fromisoformat(nxt) - self.clock()).total_seconds()))
            with trio.move_on_after(wait):
                await self._wakeup.wait()


class Deliveries:
    """All connector workers and the deadline watch; `routed(entries)` after new rows are committed."""

    def __init__(self, workers: dict[str, ConnectorWorker], deadlines: DeadlineWatch) -> None:
        self.workers = workers
        self.deadlines = deadlines

    def routed(self, entries: Sequence[OutboxEntry]) -> None:
        """New outbox rows were committed: wake their connectors' workers, and the deadline watch only when one of
        them has a deadline (its own poll covers the rest; waking it for every message cost two reads each)."""
        for name in {e.connector for e in entries}:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake()
        if any(e.deadline_at is not None for e in entries):
            self.deadlines.wake()

    def snapshot(self) -> list[dict[str, object]]:
        return [w.snapshot() for w in self.workers.values()]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for worker in self.workers.values():
                await nursery.start(worker.run)
            await nursery.start(self.deadlines.run)
            task_status.started()
