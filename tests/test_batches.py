"""switchd.batches: what every caller of a batch gets when the batch itself fails (a worker process died)."""

from __future__ import annotations

import outcome
import pytest
import trio

from switchd.batches import BatchQueue


async def test_each_caller_of_a_failed_batch_gets_the_error_itself() -> None:
    queue = BatchQueue[int, int](slots=1, batch_max=8)
    release = trio.Event()

    async def run_batch(jobs: list[int]) -> list[outcome.Outcome[int]]:
        await release.wait()  # hold the slot so that the next callers share one batch
        raise RuntimeError("worker died")

    errors: list[BaseException] = []

    async def caller(job: int) -> None:
        (result,) = await queue.submit([job])
        with pytest.raises(BaseException) as caught:
            result.unwrap()
        errors.append(caught.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.serve, run_batch)
        nursery.start_soon(caller, 0)
        await trio.sleep(0.05)  # job 0 is in the first batch; 1-3 queue behind it and form the second
        for job in (1, 2, 3):
            nursery.start_soon(caller, job)
        await trio.sleep(0.05)
        release.set()
        while len(errors) < 4:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert [type(e) for e in errors] == [RuntimeError] * 4, errors
    assert queue.batches == 2
