"""switchd.batches: what every caller of a batch gets when the batch itself fails (a worker process died)."""

from __future__ import annotations

import outcome
import pytest
import trio
import trio.testing

from switchd.batches import BatchQueue


async def test_each_caller_of_a_failed_batch_gets_the_error_itself() -> None:
    queue = BatchQueue[int, int](slots=1, batch_max=8)
    release = trio.Event()

    async def run_batch(jobs: list[int]) -> list[outcome.Outcome[int]]:
        await release.wait()  # hold the slot so that the next callers share one batch
        raise RuntimeError("worker died")

    errors: list[RuntimeError] = []

    async def caller(job: int) -> None:
        (result,) = await queue.submit([job])
        # The batch's own error: a shared Outcome raised AlreadyUsedError (a RuntimeError too) for all but the first.
        with pytest.raises(RuntimeError, match=r"^worker died$") as caught:
            result.unwrap()
        errors.append(caught.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.serve, run_batch)
        async with trio.open_nursery() as callers:
            callers.start_soon(caller, 0)
            await trio.testing.wait_all_tasks_blocked()  # job 0 is out in the first batch, holding the one slot
            for job in (1, 2, 3):
                callers.start_soon(caller, job)
            await trio.testing.wait_all_tasks_blocked()  # 1-3 are queued behind it: they form the second batch
            release.set()
        nursery.cancel_scope.cancel()
    assert [type(e) for e in errors] == [RuntimeError] * 4, errors
    assert queue.batches == 2
