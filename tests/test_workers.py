"""switchd.workers: the intake examiner pool, real spawned processes."""

from __future__ import annotations

from datetime import UTC, datetime

import trio
import trio_parallel

from switchd.examine import Job
from switchd.workers import ProcessExaminer
from tests.builders import pacs008
from tests.conftest import REPO

SCHEMAS = REPO / "schemas" / "iso20022"


async def test_the_pool_does_not_wait_on_trio_parallels_shared_limiter() -> None:
    """Each pool has its own limiter: with trio-parallel's default one (cores, shared by every pool) taken up by
    other work - the signer pool warming, say - the intake pool used to wait for it before it could warm or
    examine anything, and to reuse one process for the warm-up of all."""
    shared = trio_parallel.current_default_worker_limiter()
    held = [object() for _ in range(int(shared.total_tokens))]
    for borrower in held:
        await shared.acquire_on_behalf_of(borrower)
    try:
        pool = ProcessExaminer(SCHEMAS, 1_000_000, workers=2)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                await nursery.start(pool.run)
                job = Job(pacs008(msg_id="LIMITER-1"), frozenset({"AAAAUS33XXX"}), "MTEST", datetime.now(UTC))
                verdict = await pool.verdict(job)
            assert verdict.reject_kind is None and verdict.msg_id == "LIMITER-1"
            nursery.cancel_scope.cancel()
    finally:
        for borrower in held:
            shared.release_on_behalf_of(borrower)
