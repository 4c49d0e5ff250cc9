"""Where verdicts are computed: inline on the trio thread, or in worker processes fed in adaptive batches.

Theory of operation. Examining a message (parse, validate, rules, report) is Python CPU work that holds the GIL,
so threads do not scale it; processes do. Each worker is spawned (not forked), compiles the schemas once, and
receives adaptive batches (switchd/batches.py). Spawning and compiling take ~0.5 s, so until the workers are warm
the pool examines inline (`until_warm`): the daemon is ready without waiting for them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import outcome
import trio
import trio_parallel

from switchd.batches import BatchQueue, WorkerPool, worker_pool
from switchd.examine import Examiner, Job, Verdict
from switchd.schemas import load_schemas

BATCH_MAX = 64
log = logging.getLogger("switchd.workers")


class VerdictSource(Protocol):
    async def verdict(self, job: Job) -> Verdict: ...


class InlineExaminer:
    """Examines on the calling (trio) thread: for tests, tools and machines with one core."""

    def __init__(self, examiner: Examiner) -> None:
        self.examiner = examiner

    async def verdict(self, job: Job) -> Verdict:
        return self.examiner.verdict(job)


# --- worker process side ------------------------------------------------------------------------------------

# One Examiner per worker process, built by `_prepare` before the first job: compiling the schemas is the
# start-up cost we pay once per process, not per batch. This is process-global by design (trio-parallel keeps
# the process between jobs); nothing else in switchd keeps module state.
_WORKER_EXAMINER: dict[tuple[str, int], Examiner] = {}


def _prepare(schema_dir: str, max_bytes: int) -> bool:
    key = (schema_dir, max_bytes)
    if key not in _WORKER_EXAMINER:
        catalogue, schemas = load_schemas(Path(schema_dir))
        _WORKER_EXAMINER[key] = Examiner(catalogue, schemas, max_bytes)
    return False


def examine_batch(schema_dir: str, max_bytes: int, jobs: Sequence[Job]) -> list[Verdict | ExamineFailed]:
    """Runs in a worker process. A job whose examination raises (a bug) gets its ExamineFailed in its place: it
    fails that message only, never the others of its batch."""
    _prepare(schema_dir, max_bytes)
    examiner = _WORKER_EXAMINER[(schema_dir, max_bytes)]
    out: list[Verdict | ExamineFailed] = []
    for job in jobs:
        try:
            out.append(examiner.verdict(job))
        except Exception as exc:
            out.append(ExamineFailed(f"{type(exc).__name__}: {exc}"))
    return out


class ExamineFailed(Exception):
    """Examining one message raised: that sender gets a server error; the daemon and the batch go on."""


# --- daemon side --------------------------------------------------------------------------------------------


class ProcessExaminer:
    """A pool of `workers` examiner processes; `run()` must be running (nursery.start) while `verdict` is used.

    `run` reports started at once; until every worker has been spawned and has compiled the schemas (`warm`),
    `verdict` asks `until_warm` (the daemon's inline examiner)."""

    def __init__(
        self,
        schema_dir: Path,
        max_bytes: int,
        workers: int,
        until_warm: VerdictSource,
        *,
        batch_max: int = BATCH_MAX,
        warm_retry_s: float = 5.0,
    ) -> None:
        if workers < 1:
            raise ValueError("ProcessExaminer needs at least one worker")
        self.schema_dir = str(schema_dir)
        self.max_bytes = max_bytes
        self.workers = workers
        self.queue = BatchQueue[Job, Verdict](workers, batch_max)
        self._until_warm = until_warm
        self.warm_retry_s = warm_retry_s  # after a worker died while starting
        self.warm = trio.Event()

    async def verdict(self, job: Job) -> Verdict:
        if not self.warm.is_set():
            return await self._until_warm.verdict(job)
        (result,) = await self.queue.submit([job])
        return result.unwrap()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = time.perf_counter()
        async with worker_pool(
            partial(_prepare, self.schema_dir, self.max_bytes), self.workers, "intake worker"
        ) as pool:
            task_status.started()
            # Warm every worker (spawn + import + schema compile).
            while died := await self._warm_all(pool):
                # Killed before it could ignore SIGTERM (`systemctl stop` signals the whole group, and it may come
                # while the daemon starts), or by the OOM killer: the daemon stays up, examines on its own thread
                # meanwhile, and tries again.
                log.warning(
                    "an intake worker process died while starting (%s): examining in the daemon, trying again in %gs",
                    died[0],
                    self.warm_retry_s,
                )
                await trio.sleep(self.warm_retry_s)
            self.warm.set()
            log.info("%d intake worker process(es) warm in %.2fs", self.workers, time.perf_counter() - started)
            await self.queue.serve(partial(self._run_batch, pool))

    async def _warm_all(self, pool: WorkerPool) -> list[trio_parallel.BrokenWorkerError]:
        """One warm-up job per worker, at once (each lands in its own process); the deaths, if any."""
        died: list[trio_parallel.BrokenWorkerError] = []

        async def warm_one() -> None:
            try:
                await pool.run_sync(_prepare, self.schema_dir, self.max_bytes)
            except trio_parallel.BrokenWorkerError as exc:
                died.append(exc)

        async with trio.open_nursery() as warm:
            for _ in range(self.workers):
                warm.start_soon(warm_one)
        return died

    async def _run_batch(self, pool: WorkerPool, jobs: list[Job]) -> list[outcome.Outcome[Verdict]]:
        verdicts = await pool.run_sync(examine_batch, self.schema_dir, self.max_bytes, jobs)
        return [outcome.Error(v) if isinstance(v, ExamineFailed) else outcome.Value(v) for v in verdicts]


def default_workers() -> int:
    """One core stays with the trio thread (HTTP, journal); the others examine."""
    return max(1, (os.cpu_count() or 1) - 1)
