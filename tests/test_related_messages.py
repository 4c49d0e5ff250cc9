"""A payment's return, cancellation request and resolution in its history: the real daemon in-process (HTTP on
127.0.0.1, the simulated bank answering the payment), the journal in a real SQLite file, and `switchctl show` run
as the real command line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.builders import Tx, pacs008, stable_uetr
from tests.conftest import RunningDaemon, sim_bank, start_daemon, switchctl, write_config
from tests.iso.messages import Orig, Underlying, camt029, camt056, pacs004

# Two participants' payments share an EndToEndId (it is unique only within its sender's messages); UETRs differ.
E2E = "E2E-SHARED"
UETR_A = stable_uetr("payment of bank-a")
UETR_B = stable_uetr("payment of bank-b")


@pytest.fixture
async def running(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[RunningDaemon]:
    path = write_config(
        tmp_path, extra=sim_bank(tmp_path / "receipts.jsonl", backoff_initial_s=0.05, backoff_max_s=0.2)
    )
    running = await start_daemon(path, nursery)
    yield running
    await running.stop()


async def post(d: RunningDaemon, raw: bytes, who: str) -> str:
    async with d.client(who) as c:
        r = await c.post("/v1/messages", content=raw, headers={"Content-Type": "application/xml"})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def wait_for_state(d: RunningDaemon, mid: str, who: str, states: set[str]) -> dict[str, Any]:
    async with d.client(who) as c:
        with trio.fail_after(15):
            while True:
                body: dict[str, Any] = (await c.get(f"/v1/messages/{mid}")).json()
                if body["state"] in states:
                    return body
                await trio.sleep(0.05)


async def ctl(d: RunningDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    done = await trio.to_thread.run_sync(partial(switchctl, d.config_path, *args))
    assert done.returncode == 0, done.stderr
    return done


async def show_json(d: RunningDaemon, mid: str) -> dict[str, Any]:
    (shown,) = json.loads((await ctl(d, "--json", "show", mid)).stdout)
    assert shown["id"] == mid
    return dict(shown)


async def test_return_cancellation_and_resolution_appear_in_the_payments_history(running: RunningDaemon) -> None:
    payment = await post(running, pacs008(msg_id="PAY-1", txs=[Tx(end_to_end_id=E2E, uetr=UETR_A)]), "bank-a")
    other = await post(
        running,
        pacs008(
            msg_id="PAY-B",
            instg_bic="BBBBDEFFXXX",
            instd_bic="AAAAUS33XXX",
            txs=[Tx(end_to_end_id=E2E, uetr=UETR_B, dbtr_agt_bic="BBBBDEFFXXX", cdtr_agt_bic="AAAAUS33XXX")],
        ),
        "bank-b",
    )
    await wait_for_state(running, payment, "bank-a", {"answered"})  # the simulated bank's pacs.002 came back
    # The return names the payment by OrgnlMsgId + OrgnlEndToEndId only (no UETR): bank-b's payment with the
    # same EndToEndId must not be taken for it. The cancellation and the resolution also carry the UETR.
    ret = await post(running, pacs004(msg_id="RTR-1", original_msg_id="PAY-1", txs=[Orig(E2E, uetr=None)]), "bank-b")
    about = [Underlying("PAY-1", [Orig(E2E, uetr=UETR_A)])]
    cxl = await post(running, camt056(assignment_id="CXL-1", underlying=about), "bank-a")
    rsl = await post(running, camt029(assignment_id="RSL-1", details=about), "bank-b")
    lost = await post(
        running, pacs004(msg_id="RTR-404", original_msg_id="NEVER-SENT", txs=[Orig("E2E-404", uetr=None)]), "bank-b"
    )

    # The payment lists all three (and the bank's status report, as a report), none of the others.
    shown = await show_json(running, payment)
    relations = {r["id"]: r["relation"] for r in shown["related"]}
    reports = [mid for mid, rel in relations.items() if rel == "report"]
    assert len(reports) == 1
    assert relations == {ret: "referrer", cxl: "referrer", rsl: "referrer", reports[0]: "report"}
    assert {r["id"]: r["label"] for r in shown["related"] if r["relation"] == "referrer"} == {
        ret: "return",
        cxl: "cancellation request",
        rsl: "resolution",
    }
    # Their events are in the payment's history, in time order, each marked with its message; the report's are
    # not (the payment's own status_received tells it).
    history = shown["history"]
    received = [h["message_id"] for h in history if h["kind"] == "received"]
    assert received == [payment, ret, cxl, rsl]
    for mid in (ret, cxl, rsl):
        lines = [h for h in history if h["message_id"] == mid]
        assert [h["kind"] for h in lines][:2] == ["received", "accepted"]
        assert all(h["related"] == "referrer" for h in lines)
        # Placed by time: after every event of the payment that happened before it was received.
        first = history.index(lines[0])
        assert all(h["at"] <= lines[0]["at"] for h in history[:first] if h["message_id"] == payment)
    assert not any(h["message_id"] == reports[0] for h in history)
    # The payment's own events all there, in their journal order.
    assert [h["seq"] for h in history if h["message_id"] == payment] == [e["seq"] for e in shown["events"]]

    text = (await ctl(running, "show", payment)).stdout
    for mid in (ret, cxl, rsl):
        assert f"{mid}  pacs." in text or f"{mid}  camt." in text  # a row of the related table
    assert f"pacs.004 {ret}" in text and f"camt.056 {cxl}" in text and f"camt.029 {rsl}" in text  # history marks
    assert lost not in text and other not in text

    # Each of them names the payment, with what it does to it.
    for mid, verb in ((ret, "returns"), (cxl, "cancels"), (rsl, "answers")):
        text = (await ctl(running, "show", mid)).stdout
        assert f"{verb:<9} {payment} (pacs.008.001.08, MsgId PAY-1, from bank-a" in text
        originals = [r["id"] for r in (await show_json(running, mid))["related"] if r["relation"] == "original"]
        assert originals == [payment]
    # The resolution sees the cancellation it answers (and the return) as messages about the same payment.
    siblings = {r["id"] for r in (await show_json(running, rsl))["related"] if r["relation"] == "sibling"}
    assert siblings == {ret, cxl}

    # A return of a payment the switch never saw says so; bank-b's payment has nothing to do with any of them.
    text = (await ctl(running, "show", lost)).stdout
    assert "no original found (OrgnlMsgId NEVER-SENT; OrgnlEndToEndId E2E-404)" in text
    lost_json = await show_json(running, lost)
    assert lost_json["related"] == [] and lost_json["refers_to"]["original_msg_id"] == ["NEVER-SENT"]
    assert [r["relation"] for r in (await show_json(running, other))["related"]] == ["report"]
