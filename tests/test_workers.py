"""switchd.workers: the intake examiner pool, real spawned processes."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import UTC, datetime

import pytest
import trio
import trio_parallel

from switchd.examine import Examiner, Job
from switchd.schemas import load_schemas
from switchd.workers import InlineExaminer, ProcessExaminer
from tests.builders import pacs008
from tests.conftest import REPO, spawned_children

SCHEMAS = REPO / "schemas" / "iso20022"


def _job(msg_id: str) -> Job:
    return Job(pacs008(msg_id=msg_id), frozenset({"AAAAUS33XXX"}), "MTEST", datetime.now(UTC))


def _inline() -> InlineExaminer:
    catalogue, schemas = load_schemas(SCHEMAS)
    return InlineExaminer(Examiner(catalogue, schemas, 1_000_000))


async def test_the_pool_does_not_wait_on_trio_parallels_shared_limiter() -> None:
    """Each pool has its own limiter: with trio-parallel's default one (cores, shared by every pool) taken up by
    other work - the signer pool warming, say - the intake pool used to wait for it before it could warm or
    examine anything, and to reuse one process for the warm-up of all."""
    shared = trio_parallel.current_default_worker_limiter()
    held = [object() for _ in range(int(shared.total_tokens))]
    for borrower in held:
        await shared.acquire_on_behalf_of(borrower)
    try:
        pool = ProcessExaminer(SCHEMAS, 1_000_000, 2, _inline())
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                await nursery.start(pool.run)
                await pool.warm.wait()
                verdict = await pool.verdict(_job("LIMITER-1"))
            assert verdict.reject_kind is None and verdict.msg_id == "LIMITER-1"
            assert pool.queue.jobs == 1  # by a worker process
            nursery.cancel_scope.cancel()
    finally:
        for borrower in held:
            shared.release_on_behalf_of(borrower)


async def test_until_its_workers_are_warm_the_pool_examines_inline_then_in_the_processes() -> None:
    """The daemon says it is ready without waiting ~0.5 s for the workers to spawn and compile the schemas: the
    messages of that time are examined on the calling thread, the later ones by the processes."""
    pool = ProcessExaminer(SCHEMAS, 1_000_000, 1, _inline())
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await nursery.start(pool.run)
            assert not pool.warm.is_set()  # started before a process could have compiled anything
            early = await pool.verdict(_job("EARLY-1"))
            assert early.reject_kind is None and early.msg_id == "EARLY-1"
            assert pool.queue.jobs == 0  # examined inline
            await pool.warm.wait()
            late = await pool.verdict(_job("LATE-1"))
            assert late.reject_kind is None and late.msg_id == "LATE-1"
            assert pool.queue.jobs == 1  # by a worker process
        nursery.cancel_scope.cancel()


async def test_a_worker_killed_while_starting_leaves_the_pool_examining_inline_until_a_retry_warms_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`systemctl stop` signals the whole process group, and a worker still starting has not yet set itself to
    ignore SIGTERM: it dies (so does one the OOM killer picks). The daemon used to exit 1 with a traceback; it stays
    up, examining on its thread, and warms a new worker a little later."""
    before = spawned_children()
    pool = ProcessExaminer(SCHEMAS, 1_000_000, 1, _inline(), warm_retry_s=0.5)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await nursery.start(pool.run)
            # Killed until one dies with its first job sent (a worker killed before that is quietly replaced by
            # trio-parallel, as a real start-up would be).
            while "died while starting" not in caplog.text:
                for pid in spawned_children() - before:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await trio.sleep(0.005)
            verdict = await pool.verdict(_job("AFTER-KILL"))
            assert verdict.reject_kind is None and verdict.msg_id == "AFTER-KILL"
            assert not pool.warm.is_set() and pool.queue.jobs == 0  # inline: a new worker takes longer to warm

            await pool.warm.wait()  # the retry
            later = await pool.verdict(_job("AFTER-RETRY"))
            assert later.reject_kind is None and pool.queue.jobs == 1
        nursery.cancel_scope.cancel()
