"""Signer processes starting at the same moment each log in to the same SoftHSM file token: none may fail."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue

from tests.hsm.conftest import DevToken
from tests.hsm.login_child import open_and_close

ROUNDS, PROCESSES = 20, 4


def test_processes_starting_together_all_log_in(dev_token: DevToken) -> None:
    """With only C_Login under the lock, a process listing the tokens beside another's login failed now and then
    ("no token labelled ...", "cannot list tokens: GeneralError"): 3-6 of 120 logins here. The signer processes do
    start together (warm-up, a restart after an HSM outage)."""
    ctx = multiprocessing.get_context("spawn")
    out: Queue[str] = ctx.Queue()
    outcomes: dict[str, int] = {}
    for _ in range(ROUNDS):
        processes = [ctx.Process(target=open_and_close, args=(dev_token.settings, out)) for _ in range(PROCESSES)]
        for p in processes:
            p.start()
        for _ in processes:
            result = out.get(timeout=60)
            outcomes[result] = outcomes.get(result, 0) + 1
        for p in processes:
            p.join(timeout=60)
    assert outcomes == {"ok": ROUNDS * PROCESSES}
