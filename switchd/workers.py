"""Where verdicts are computed: inline on the trio thread, or in worker processes fed in adaptive batches.

Theory of operation. Examining a message (parse, validate, rules, report) is Python CPU work that holds the GIL,
so threads do not scale it; processes do. Each worker is spawned (not forked), compiles the schemas once, and
receives adaptive batches (switchd/batches.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import outcome
import trio

from switchd.batches import BatchQueue, WorkerPool, worker_pool
from switchd.examine import Examiner, Job, Verdict
from switchd.schemas import load_schemas

BATCH_MAX = 64


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
    """A pool of `workers` examiner processes; `run()` must be running (nursery.start) while `verdict` is used."""

    def __init__(self, schema_dir: Path, max_bytes: int, workers: int, batch_max: int = BATCH_MAX) -> None:
        if workers < 1:
            raise ValueError("ProcessExaminer needs at least one worker")
        self.schema_dir = str(schema_dir)
        self.max_bytes = max_bytes
        self.workers = workers
        self.queue = BatchQueue[Job, Verdict](workers, batch_max)

    async def verdict(self, job: Job) -> Verdict:
        (result,) = await self.queue.submit([job])
        return result.unwrap()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with worker_pool(
            partial(_prepare, self.schema_dir, self.max_bytes), self.workers, "intake worker"
        ) as pool:
            # Warm every worker (spawn + import + schema compile) before the daemon says it is ready.
            async with trio.open_nursery() as warm:
                for _ in range(self.workers):
                    warm.start_soon(partial(pool.run_sync, _prepare, self.schema_dir, self.max_bytes))
            task_status.started()
            await self.queue.serve(partial(self._run_batch, pool))

    async def _run_batch(self, pool: WorkerPool, jobs: list[Job]) -> list[outcome.Outcome[Verdict]]:
        verdicts = await pool.run_sync(examine_batch, self.schema_dir, self.max_bytes, jobs)
        return [outcome.Error(v) if isinstance(v, ExamineFailed) else outcome.Value(v) for v in verdicts]


def default_workers() -> int:
    """One core stays with the trio thread (HTTP, journal); the others examine."""
    return max(1, (os.cpu_count() or 1) - 1)
