"""Group commit: one thread owns the write connection and commits everything queued in one transaction.

Theory of operation
    trio tasks queue an operation and park (uncancellably) until it is settled. The writer thread takes whatever is
    queued, up to `batch_cap` operations, and runs them in ONE transaction (one WAL fsync with synchronous=FULL).
    An operation that raises is rolled back alone and its awaiter gets the exception: the batch first runs without
    savepoints (nothing fails in the common case), and if one operation raises, the transaction is rolled back and
    the batch runs again with each operation inside its own SAVEPOINT. After COMMIT returns, ONE `run_sync_soon`
    call hops back into trio and reschedules every task of the batch (a thread hop costs ~0.4 ms here: one per
    message would cost more than the fsync it shares). If the transaction itself fails (BEGIN, COMMIT, disk full),
    every operation of the batch gets a JournalError and nothing of it is stored. Batches form by themselves: while
    one fsync runs, the next callers queue up; under load the writer also waits up to `commit_delay` (2 ms) for
    more before it commits.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import trio

from switchd.errors import JournalError
from switchd.journal.records import JournalStatistics
from switchd.journal.writes import Tx

T = TypeVar("T")
DEFAULT_BATCH_CAP = 256
DEFAULT_COMMIT_DELAY = 0.002  # seconds; see Writer._run


class Op(Generic[T]):
    """One queued operation: `apply` runs in the writer thread; `task` (parked in `submit`) is rescheduled in trio
    once it is settled."""

    __slots__ = ("apply", "error", "result", "task")

    def __init__(self, apply: Callable[[Tx], T], task: trio.lowlevel.Task) -> None:
        self.apply = apply
        self.task = task
        self.result: T | None = None
        self.error: BaseException | None = None


_STOP = object()


class Writer:
    """The writer thread and its queue. `start` in trio, `submit` from trio tasks, `stop` then `join`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        batch_cap: int = DEFAULT_BATCH_CAP,
        commit_delay: float = DEFAULT_COMMIT_DELAY,
    ) -> None:
        self._conn = conn
        self._path = path
        self._cap = batch_cap
        self._delay = commit_delay
        self._last_batch = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Guards _failed/_closing against the writer thread dying while a task is queueing.
        self._lock = threading.Lock()
        self._failed: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._commits = self._ops = self._failed_ops = self._failed_batches = 0
        self._largest = self._wakeups = 0

    def start(self) -> None:
        """Start the thread; the current trio run is the one it wakes."""
        if self._thread is not None:
            raise JournalError(f"{self._path}: the journal writer was already started")
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._run, name=f"journal-writer {self._path.name}", daemon=True)
        self._thread.start()

    async def submit(self, apply: Callable[[Tx], T]) -> T:
        """Queue `apply` and wait until its transaction is durable. Raises what `apply` raised, or JournalError."""
        op = Op(apply, trio.lowlevel.current_task())
        with self._lock:
            if self._thread is None:
                raise JournalError(f"{self._path}: the journal writer is not started")
            if self._failed is not None:
                raise JournalError(f"{self._path}: the journal writer has failed") from self._failed
            if self._closing:
                raise JournalError(f"{self._path}: the journal is closing")
            self._queue.put(op)
        # Uncancellable, like trio.to_thread.run_sync: once queued the op commits or fails within one batch, and
        # the caller must learn which (a message is accepted only once this returns). Parking the task with an abort
        # that always fails is a shield without a CancelScope and an Event (~15 us less per operation here);
        # `_release` reschedules it. Nothing can run between the put above and this park: both are on the trio
        # thread with no checkpoint between them, and `_release` only runs on it too.
        await trio.lowlevel.wait_task_rescheduled(_refuse_abort)
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[return-value]  # set whenever error is None

    def stop(self) -> None:
        """No new operations; the thread commits what is queued, closes the connection and ends."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._thread is None:
                self._conn.close()
                return
            self._queue.put(_STOP)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            commits=self._commits,
            ops=self._ops,
            failed_ops=self._failed_ops,
            failed_batches=self._failed_batches,
            largest_batch=self._largest,
            wakeups=self._wakeups,
            queued=self._queue.qsize(),
        )

    # --- the writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[Op[Any]] = []
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                # Commit delay (PostgreSQL's commit_delay, with the last batch standing in for commit_siblings): under
                # load, wait up to `commit_delay` for more operations before committing. Each commit costs ~0.5 ms of
                # CPU here whatever its size (the fsync, ~0.13 ms, and a WAL frame per page touched, ~8 us each), and
                # on one busy core the callers produce a message every ~0.3 ms, so batches stayed at ~3 and the
                # commit was half the writer's CPU. Measured (a scratch harness kept outside the repository: the
                # pipeline on one core, 32 callers): 2 ms -> batches of ~12, writer CPU per message -40%, throughput
                # +20-40%; 4 ms gained nothing more. A lone message (last batch of one) never waits.
                deadline = time.monotonic() + self._delay if self._delay > 0 and self._last_batch > 1 else 0.0
                while len(batch) < self._cap:
                    try:
                        wait = deadline - time.monotonic()
                        nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                self._last_batch = len(batch)
                self._commit(batch)
                woken, batch = batch, []
                self._wake(woken)
        except BaseException as e:  # a bug in this module: fail everyone rather than leave awaiters hanging
            with self._lock:
                self._failed = e
                pending = batch + [op for op in _drain(self._queue) if op is not _STOP]
            for op in pending:
                op.error = JournalError(f"{self._path}: the journal writer failed: {e!r}")
            if pending:
                self._wake(pending)
            raise
        finally:
            self._conn.close()

    def _commit(self, batch: list[Op[Any]]) -> None:
        cur = self._conn.cursor()
        try:
            if not self._apply_all(cur, batch):
                self._apply_each(cur, batch)
            cur.execute("COMMIT")
        except Exception as e:  # BEGIN, a savepoint, the head or COMMIT failed: the whole batch fails
            self._fail_batch(batch, e)
            return
        finally:
            cur.close()
        failed = sum(op.error is not None for op in batch)
        self._commits += 1
        self._ops += len(batch)
        self._failed_ops += failed
        self._largest = max(self._largest, len(batch))

    def _apply_all(self, cur: sqlite3.Cursor, batch: list[Op[Any]]) -> bool:
        """Run the whole batch without savepoints (the common case: nothing fails). If an operation raises, roll the
        transaction back and return False: the caller runs the batch again with one savepoint per operation.

        Why: a SAVEPOINT and its RELEASE per operation, and the undo copies of every page it touches, were ~10% of
        the writer's CPU per message; operations only fail on bugs and write errors. Running one again is safe: an
        operation is a function of the transaction and its own arguments (re-pinning an event detail writes the same
        value again)."""
        tx, seq = _begin(cur)
        try:
            for op in batch:
                op.result = op.apply(tx)
            tx.flush()  # a held row that cannot be inserted fails here, on no particular operation: run again
        except Exception:
            if self._conn.in_transaction:
                cur.execute("ROLLBACK")
            for done in batch:
                done.result = None
            return False
        _advance_head(cur, tx, seq)
        return True

    def _apply_each(self, cur: sqlite3.Cursor, batch: list[Op[Any]]) -> None:
        """Run the batch with each operation in its own SAVEPOINT: one that raises is rolled back alone."""
        tx, seq = _begin(cur)
        for op in batch:
            mark = (tx.seq, tx.head)
            cur.execute("SAVEPOINT op")
            try:
                op.result = op.apply(tx)
                tx.flush()  # its own rows, inside its own savepoint
            except Exception as e:
                tx.discard()
                # If the error ended the whole transaction (disk full, I/O) this raises too: the batch fails.
                cur.execute("ROLLBACK TO op")
                cur.execute("RELEASE op")
                tx.seq, tx.head = mark
                op.error = _as_journal_error(e)
            else:
                cur.execute("RELEASE op")
        _advance_head(cur, tx, seq)

    def _fail_batch(self, batch: list[Op[Any]], e: Exception) -> None:
        what = f"{self._path}: the journal transaction failed, nothing of its {len(batch)} operation(s) stored: {e}"
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as again:
                what += f" (and ROLLBACK failed: {again})"
        for op in batch:
            op.result = None
            if op.error is None:  # an op that failed on its own keeps its own, more precise, error
                op.error = JournalError(what)
                op.error.__cause__ = e
        self._failed_batches += 1
        self._ops += len(batch)
        self._failed_ops += len(batch)

    def _wake(self, batch: list[Op[Any]]) -> None:
        assert self._token is not None
        self._wakeups += 1
        with contextlib.suppress(trio.RunFinishedError):  # the trio run is over: nobody is left waiting
            self._token.run_sync_soon(_release, batch)


def _begin(cur: sqlite3.Cursor) -> tuple[Tx, int]:
    """Open the batch transaction: a Tx at the chain head, and the head's seq as it was."""
    cur.execute("BEGIN IMMEDIATE")
    seq, head = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    return Tx(cur, seq, head), seq


def _advance_head(cur: sqlite3.Cursor, tx: Tx, seq: int) -> None:
    """Move the chain head to the batch's last event, if it wrote any."""
    if tx.seq != seq:
        cur.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (tx.seq, tx.head))


def _release(batch: list[Op[Any]]) -> None:
    for op in batch:
        trio.lowlevel.reschedule(op.task)


def _refuse_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _drain(q: queue.SimpleQueue[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def _as_journal_error(e: Exception) -> Exception:
    """sqlite3 errors become JournalError (the one type callers catch); the caller's own errors stay as they are."""
    if isinstance(e, sqlite3.Error):
        err = JournalError(str(e))
        err.__cause__ = e
        return err
    return e
