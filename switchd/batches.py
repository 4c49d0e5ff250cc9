"""Worker process pools fed in adaptive batches: callers queue jobs, a dispatcher hands them over a batch at a time.

The dispatcher takes one of `slots` (one per worker process), then everything queued at that moment (up to
`batch_max`): under load a batch grows to what arrived during the previous one and the per-job round trip to the
process (~0.4 ms) is shared, while at low load a lone job goes out at once. `worker_pool` opens the processes
themselves. Used by the intake examiners (switchd/workers.py) and the HSM signers (hsm/service.py).
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Generic, NoReturn, TypeVar

import outcome
import trio
import trio_parallel

J = TypeVar("J")
R = TypeVar("R")
# Runs one batch: one outcome per job, in order. Raising fails every job of the batch with that error.
RunBatch = Callable[[list[J]], Awaitable[list[outcome.Outcome[R]]]]
log = logging.getLogger("switchd.workers")


class WorkerPool:
    """Spawned worker processes; `run_sync` runs a job in one of them under the pool's own limiter."""

    def __init__(self, ctx: trio_parallel.WorkerContext, processes: int) -> None:
        self._ctx = ctx
        # Its own, of its process count: trio-parallel's default limiter (cores) is shared by every pool, so one
        # pool's jobs could wait on another's and its warm-up reuse one process.
        self._limiter = trio.CapacityLimiter(processes)

    async def run_sync(self, fn: Callable[..., R], *args: Any, kill_on_cancel: bool = False) -> R:
        result: R = await self._ctx.run_sync(fn, *args, kill_on_cancel=kill_on_cancel, limiter=self._limiter)
        return result


@asynccontextmanager
async def worker_pool(init: Callable[[], Any] | None, processes: int, what: str) -> AsyncIterator[WorkerPool]:
    """A pool of `processes` spawned worker processes that only the daemon stops.

    - Each process runs `init` (if any) before its first job, after ignoring SIGTERM and SIGINT: `systemctl stop`
      (without KillMode=mixed), `timeout` and Ctrl-C signal the whole process group, and a worker that died of it
      would fail the work the daemon is still draining. The pool's close ends them (SIGKILL after the grace period
      for a straggler).
    - A worker that died anyway (killed from outside, OOM) makes trio-parallel's close raise BrokenWorkerError;
      the work is over by then, so it is logged, and whatever was ending the pool (a cancellation, as a rule) goes
      on as if the close had been clean.
    """
    try:
        async with trio_parallel.open_worker_context(
            idle_timeout=math.inf, grace_period=10.0, init=partial(_ignore_stop_signals_then, init)
        ) as ctx:
            yield WorkerPool(ctx, processes)
    except trio_parallel.BrokenWorkerError as exc:
        log.warning("%s processes ended uncleanly at shutdown: %s", what, exc.args[0] if exc.args else exc)
        if exc.__context__ is not None:
            raise exc.__context__ from None


def _ignore_stop_signals_then(init: Callable[[], Any] | None) -> Any:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return init() if init is not None else None


class _Call(Generic[R]):
    """One `submit`: its jobs' outcomes as they come in, and one event for when the last one has (not one per job:
    a caller handing over 32 jobs waits once)."""

    __slots__ = ("done", "left", "results")

    def __init__(self, n: int) -> None:
        self.done = trio.Event()
        self.left = n
        self.results: list[outcome.Outcome[R] | None] = [None] * n

    def settle(self, index: int, result: outcome.Outcome[R]) -> None:
        self.results[index] = result
        self.left -= 1
        if not self.left:
            self.done.set()


_Queued = tuple[_Call[R], int, J]  # (the call, the job's index in it, the job)


class BatchQueue(Generic[J, R]):
    """Jobs in, outcomes out; `serve(run_batch)` must be running while `submit` is used."""

    def __init__(self, slots: int, batch_max: int) -> None:
        self.batch_max = batch_max
        self._send, self._receive = trio.open_memory_channel[_Queued[R, J]](math.inf)
        self._slots = trio.Semaphore(slots)  # released by the batch task, not the dispatcher
        self.batches = 0
        self.jobs = 0

    async def submit(self, jobs: Sequence[J], timeout_s: float = math.inf) -> list[outcome.Outcome[R]]:
        """Queue `jobs` and wait for their outcomes. Raises trio.TooSlowError after `timeout_s`.

        The queue is unbounded: callers bound what they hand over (intake connections, delivery concurrency). The
        wait is shielded: once queued a job runs, and an abandoned waiter would only lose its answer."""
        call: _Call[R] = _Call(len(jobs))
        for i, job in enumerate(jobs):
            self._send.send_nowait((call, i, job))
        if jobs:
            # Shielded from outside cancellation, but its own deadline still applies.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout_s):
                await call.done.wait()
        if call.left:
            raise trio.TooSlowError(f"no answer from the worker processes within {timeout_s:g} s")
        return call.results  # type: ignore[return-value]  # all set once `left` is 0

    async def serve(self, run_batch: RunBatch[J, R]) -> NoReturn:
        async with trio.open_nursery() as nursery:
            while True:
                await self._slots.acquire()
                batch = [await self._receive.receive()]
                while len(batch) < self.batch_max:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                nursery.start_soon(self._run, run_batch, batch)

    async def _run(self, run_batch: RunBatch[J, R], batch: list[_Queued[R, J]]) -> None:
        try:
            result = await outcome.acapture(run_batch, [job for _, _, job in batch])
        finally:
            self._slots.release()
        self.batches += 1
        self.jobs += len(batch)
        # A worker crash fails its batch: each caller gets the error, the daemon lives. One Outcome each: an
        # Outcome can be unwrapped once only, so a shared one failed every caller after the first differently.
        failed = result if isinstance(result, outcome.Error) else None
        outcomes = [outcome.Error(failed.error) for _ in batch] if failed is not None else result.unwrap()
        for (call, index, _), one in zip(batch, outcomes, strict=True):
            call.settle(index, one)
