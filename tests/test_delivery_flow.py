"""Routing, delivery and status reports end to end: the real daemon in-process, HTTP on 127.0.0.1, the simulated bank
recording what it receives on disk, the journal in a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from lxml import etree

from adapters.local.simbank import read_receipts
from switchd.iso.outbound import outbound_envelope
from tests.builders import Tx, pacs008
from tests.conftest import RunningDaemon, sim_bank, start_daemon, switchctl, write_config
from tests.iso.messages import Orig, camt029, camt056, pacs004

# The simulated bank may post too (its returns): the SHA-256 of its token "sim-bank-token".
SIM_BANK_TOKEN = "4d3fb22cdf4f76ea5b22c16be5f02292e90c30a649716f7075c621458d45070a"
SIM_RULES = """rules = [
  { end_to_end_id = "REJECT*", reject = "AC04" },
  { end_to_end_id = "SILENT*", silent = true },
]"""
ROUTES = """
[[routes]]
name = "refused"
creditor_agent = "XXXX*"
reject = "RR04"

[[routes]]
name = "to-c"
creditor_agent = "CCCC*"
connector = "sim2"

[[routes]]
name = "slow-lane"
min_amount = 5000
connector = "sim"
deadline_s = 0.5

[[routes]]
name = "default"
connector = "sim"
"""
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"}


def sim_config(tmp: Path, *, failures: str = "", max_attempts: int = 5, breaker: int = 50) -> Path:
    sim = sim_bank(
        tmp / "receipts.jsonl",
        token_sha256=SIM_BANK_TOKEN,
        options=f"{SIM_RULES}\nfailures = [{failures}]",
        route=None,
        max_attempts=max_attempts,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        breaker_failures=breaker,
        breaker_cooldown_s=0.3,
    )
    sim2 = sim_bank(tmp / "receipts2.jsonl", name="sim2", participant="sim-bank-2", bic="CCCCGB2LXXX", route=None)
    return write_config(tmp, extra=sim + sim2 + ROUTES)


@pytest.fixture
async def routed(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[RunningDaemon]:
    running = await start_daemon(sim_config(tmp_path), nursery)
    yield running
    await running.stop()


async def wait_for_state(
    d: RunningDaemon, mid: str, states: set[str], timeout: float = 15, who: str = "bank-a"
) -> dict[str, Any]:
    async with d.client(who) as c:
        with trio.fail_after(timeout):
            while True:
                body = (await c.get(f"/v1/messages/{mid}")).json()
                if body["state"] in states:
                    return body
                await trio.sleep(0.05)


async def post(d: RunningDaemon, raw: bytes, who: str = "bank-a") -> Any:
    async with d.client(who) as c:
        return await c.post("/v1/messages", content=raw, headers={"Content-Type": "application/xml"})


def kinds(body: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in body["events"]]


async def reports_for(d: RunningDaemon, who: str = "bank-a") -> list[dict[str, Any]]:
    async with d.client(who) as c:
        return (await c.get("/v1/reports")).json()["reports"]


async def test_round_trip_to_the_simulated_bank_and_back(routed: RunningDaemon, tmp_path: Path) -> None:
    r = await post(routed, pacs008(msg_id="RT-1", txs=[Tx(end_to_end_id="E2E-RT")]))
    assert r.status_code == 202
    mid = r.json()["id"]
    body = await wait_for_state(routed, mid, {"answered"})
    assert kinds(body)[:8] == [
        "received",
        "validated",
        "accepted",
        "routed",
        "attempt",
        "delivered",
        "status_received",
        "reported",
    ]
    routed_ev = body["events"][3]["detail"]
    assert routed_ev["connector"] == "sim" and routed_ev["route"] == "default" and routed_ev["msg_id"] == "RT-1"
    # The bank got exactly one copy, not marked as a duplicate.
    receipts = read_receipts(tmp_path / "receipts.jsonl")
    assert [(x["msg_id"], x["possible_duplicate"]) for x in receipts] == [("RT-1", False)]
    # The originator's report: ACSC, about its own MsgId, valid pacs.002.
    reports = await reports_for(routed)
    assert [(x["message_id"], x["status"]) for x in reports] == [(mid, "ACSC")]
    doc = etree.fromstring(reports[0]["xml"].encode())
    assert doc.findtext(".//p:OrgnlMsgId", namespaces=NS) == "RT-1"
    assert doc.findtext(".//p:GrpSts", namespaces=NS) == "ACSC"


async def test_bank_rejection_reaches_the_originator_with_the_banks_reason(routed: RunningDaemon) -> None:
    r = await post(routed, pacs008(msg_id="RJ-1", txs=[Tx(end_to_end_id="REJECT-1")]))
    mid = r.json()["id"]
    body = await wait_for_state(routed, mid, {"answered"})
    status = next(e for e in body["events"] if e["kind"] == "status_received")["detail"]
    assert status["status"] == "RJCT"
    reports = await reports_for(routed)
    doc = etree.fromstring(reports[-1]["xml"].encode())
    assert doc.findtext(".//p:GrpSts", namespaces=NS) == "RJCT"
    assert doc.findtext(".//p:TxInfAndSts/p:OrgnlEndToEndId", namespaces=NS) == "REJECT-1"
    assert doc.findtext(".//p:TxInfAndSts/p:StsRsnInf/p:Rsn/p:Cd", namespaces=NS) == "AC04"


async def test_a_route_that_refuses_answers_422_with_its_reason(routed: RunningDaemon) -> None:
    r = await post(routed, pacs008(msg_id="RR-1", txs=[Tx(end_to_end_id="E-RR", cdtr_agt_bic="XXXXGB2LXXX")]))
    assert r.status_code == 422
    assert [e["code"] for e in r.json()["errors"]] == ["RR04"]
    assert "RR04" in r.json()["status_report"]


async def test_bulk_message_is_split_per_destination(routed: RunningDaemon, tmp_path: Path) -> None:
    txs = [
        Tx(end_to_end_id="S-1", tx_id="T1", amount="10.00"),
        Tx(end_to_end_id="S-2", tx_id="T2", amount="20.00", cdtr_agt_bic="CCCCGB2LXXX"),
        Tx(end_to_end_id="S-3", tx_id="T3", amount="30.00"),
    ]
    r = await post(routed, pacs008(msg_id="SPLIT-1", txs=txs))
    assert r.status_code == 202
    mid = r.json()["id"]
    body = await wait_for_state(routed, mid, {"answered"})
    parts = [e["detail"] for e in body["events"] if e["kind"] == "routed"]
    assert [(p["connector"], p["transactions"]) for p in parts] == [("sim", 2), ("sim2", 1)]
    with trio.fail_after(10):
        while not (tmp_path / "receipts2.jsonl").exists() or not read_receipts(tmp_path / "receipts2.jsonl"):
            await trio.sleep(0.05)
    first = read_receipts(tmp_path / "receipts.jsonl")
    second = read_receipts(tmp_path / "receipts2.jsonl")
    assert len(first) == len(second) == 1
    assert sorted(first[0]["end_to_end_ids"]) == ["S-1", "S-3"]
    assert second[0]["end_to_end_ids"] == ["S-2"]
    # Each part is its own message with its own MsgId.
    assert first[0]["msg_id"] != second[0]["msg_id"] and "SPLIT-1" not in (first[0]["msg_id"], second[0]["msg_id"])


async def test_timeout_rejects_to_the_originator_and_a_silent_bank_never_answers(routed: RunningDaemon) -> None:
    r = await post(routed, pacs008(msg_id="TO-1", txs=[Tx(end_to_end_id="SILENT-1", amount="6000.00")]))
    mid = r.json()["id"]
    body = await wait_for_state(routed, mid, {"timed_out"})
    assert "timed_out" in kinds(body)
    reports = await reports_for(routed)
    doc = etree.fromstring(reports[-1]["xml"].encode())
    assert doc.findtext(".//p:GrpSts", namespaces=NS) == "RJCT"
    assert doc.findtext(".//p:StsRsnInf/p:Rsn/p:Cd", namespaces=NS) == "AB06"


async def test_retries_with_backoff_then_delivers(tmp_path: Path, nursery: trio.Nursery) -> None:
    failures = '{ match = "RETRY*", times = 2 }'
    d = await start_daemon(sim_config(tmp_path, failures=failures), nursery)
    r = await post(d, pacs008(msg_id="RETRY-1", txs=[Tx(end_to_end_id="E-RETRY")]))
    mid = r.json()["id"]
    body = await wait_for_state(d, mid, {"answered"})
    assert kinds(body).count("attempt") == 3
    assert kinds(body).count("attempt_failed") == 2
    assert kinds(body).count("delivered") == 1
    await d.stop()


async def test_gives_up_after_max_attempts_and_tells_the_originator(tmp_path: Path, nursery: trio.Nursery) -> None:
    failures = '{ match = "DOWN*" }'
    d = await start_daemon(sim_config(tmp_path, failures=failures, max_attempts=2, breaker=50), nursery)
    r = await post(d, pacs008(msg_id="DOWN-1", txs=[Tx(end_to_end_id="E-DOWN")]))
    mid = r.json()["id"]
    body = await wait_for_state(d, mid, {"failed"})
    assert kinds(body).count("attempt") == 2
    assert "delivery_failed" in kinds(body)
    reports = await reports_for(d)
    doc = etree.fromstring(reports[-1]["xml"].encode())
    assert doc.findtext(".//p:StsRsnInf/p:Rsn/p:Cd", namespaces=NS) == "AB08"
    await d.stop()


async def test_a_status_report_that_matches_nothing_is_kept_and_flagged(routed: RunningDaemon) -> None:
    report = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"><FIToFIPmtStsRpt>'
        b"<GrpHdr><MsgId>STS-X</MsgId><CreDtTm>2026-11-23T10:00:00Z</CreDtTm>"
        b"<InstgAgt><FinInstnId><BICFI>BBBBDEFFXXX</BICFI></FinInstnId></InstgAgt></GrpHdr>"
        b"<OrgnlGrpInfAndSts><OrgnlMsgId>NEVER-SENT</OrgnlMsgId><OrgnlMsgNmId>pacs.008.001.08</OrgnlMsgNmId>"
        b"<GrpSts>ACSC</GrpSts></OrgnlGrpInfAndSts></FIToFIPmtStsRpt></Document>"
    )
    r = await post(routed, report, who="bank-b")
    assert r.status_code == 202, r.text
    async with routed.client("bank-b") as c:
        body = (await c.get(f"/v1/messages/{r.json()['id']}")).json()
    assert body["state"] == "unmatched"
    assert "unmatched" in kinds(body)


async def test_every_routed_type_reaches_the_bank(routed: RunningDaemon, tmp_path: Path) -> None:
    """Not only payments: a return, a cancellation request and its resolution are delivered too (camt.056 and
    camt.029 have no GrpHdr; their AppHdr is built from Assgnmt/Id)."""
    messages = {
        "pacs.004": pacs004(msg_id="RET-9", instg_bic="AAAAUS33XXX", instd_bic="BBBBDEFFXXX"),
        "camt.056": camt056(assignment_id="CXL-9"),
        "camt.029": camt029(assignment_id="RSL-9", assigner_bic="AAAAUS33XXX", assignee_bic="BBBBDEFFXXX"),
    }
    ids = {}
    for name, raw in messages.items():
        r = await post(routed, raw)
        assert r.status_code == 202, (name, r.text)
        ids[name] = r.json()["id"]
    for name, mid in ids.items():
        body = await wait_for_state(routed, mid, {"delivered", "answered"})
        assert "delivered" in kinds(body), name
    received = {r["msg_id"] for r in read_receipts(tmp_path / "receipts.jsonl")}
    assert {"RET-9", "CXL-9", "RSL-9"} <= received


def break_builder(monkeypatch: pytest.MonkeyPatch, marker: bytes) -> None:
    """The outbound envelope builder raises for documents holding `marker` (a simulated bug), works for the rest."""

    def broken(document: Any, **kw: Any) -> bytes:
        text = document if isinstance(document, bytes) else etree.tostring(document)
        if marker in text:
            raise ValueError("simulated builder bug")
        return outbound_envelope(document, **kw)

    monkeypatch.setattr("switchd.outgoing.outbound_envelope", broken)


async def test_a_part_whose_bytes_cannot_be_built_fails_with_ab09_instead_of_waiting_unseen(
    routed: RunningDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_builder(monkeypatch, b"UNBUILDABLE")
    r = await post(routed, pacs008(msg_id="UNBUILDABLE-1", txs=[Tx(end_to_end_id="E2E-UB")]))
    assert r.status_code == 202
    mid = r.json()["id"]
    body = await wait_for_state(routed, mid, {"failed"})
    (failed,) = [e for e in body["events"] if e["kind"] == "delivery_failed"]
    assert failed["detail"]["sent"] is False and "simulated builder bug" in failed["detail"]["error"]
    (report,) = [r for r in await reports_for(routed) if r["message_id"] == mid]
    assert report["status"] == "RJCT" and "<Cd>AB09</Cd>" in report["xml"]
    assert "UNBUILDABLE-1" not in {x["msg_id"] for x in read_receipts(tmp_path / "receipts.jsonl")}
    # The next message goes through as usual.
    r = await post(routed, pacs008(msg_id="AFTER-UB", txs=[Tx(end_to_end_id="E2E-AUB")]))
    await wait_for_state(routed, r.json()["id"], {"answered", "delivered"})


async def test_a_return_from_the_bank_is_journaled_on_the_payment_and_forwarded_to_the_originator(
    routed: RunningDaemon, tmp_path: Path
) -> None:
    r = await post(routed, pacs008(msg_id="RET-ORIG", txs=[Tx(end_to_end_id="E2E-RET")]))
    mid = r.json()["id"]
    await wait_for_state(routed, mid, {"answered"})
    uetr = next(x["uetrs"][0] for x in read_receipts(tmp_path / "receipts.jsonl") if x["msg_id"] == "RET-ORIG")
    returned = pacs004(msg_id="RTR-9", original_msg_id="RET-ORIG", txs=[Orig(end_to_end_id="E2E-RET", uetr=uetr)])
    async with httpx.AsyncClient(
        base_url=routed.base_url, headers={"Authorization": "Bearer sim-bank-token"}, timeout=30
    ) as bank:
        r = await bank.post("/v1/messages", content=returned, headers={"Content-Type": "application/xml"})
    assert r.status_code == 202, r.text
    return_id = r.json()["id"]
    body = await wait_for_state(routed, mid, {"returned"})
    (event,) = [e for e in body["events"] if e["kind"] == "returned"]
    assert event["detail"]["return_message_id"] == return_id
    assert event["detail"]["transactions"] == [{"end_to_end_id": "E2E-RET", "uetr": uetr}]
    # bank-a gets the bank's pacs.004 in its report feed; it is not routed anywhere else.
    (fwd,) = [x for x in await reports_for(routed) if x["message_id"] == mid and x["status"] == "RETURN"]
    assert fwd["message_type"] == "pacs.004.001.09" and "<MsgId>RTR-9</MsgId>" in fwd["xml"]
    assert "RTR-9" not in {x["msg_id"] for x in read_receipts(tmp_path / "receipts.jsonl")}
    shown = switchctl(routed.config_path, "show", mid)
    assert shown.returncode == 0, shown.stderr
    assert "returned" in shown.stdout and shown.stdout.count(return_id) >= 1

    # bank-b (same BIC, but the payment did not go to its connector) cannot return it: its pacs.004 is routed.
    other = pacs004(msg_id="RTR-10", original_msg_id="RET-ORIG", txs=[Orig(end_to_end_id="E2E-RET", uetr=uetr)])
    r = await post(routed, other, who="bank-b")
    assert r.status_code == 202, r.text
    await wait_for_state(routed, r.json()["id"], {"delivered", "answered"}, who="bank-b")
    assert [e["kind"] for e in (await wait_for_state(routed, mid, {"returned"}))["events"]].count("returned") == 1


async def test_a_return_of_more_than_the_payment_is_refused_am09_and_not_passed_on(
    routed: RunningDaemon, tmp_path: Path
) -> None:
    r = await post(routed, pacs008(msg_id="RET-BIG", txs=[Tx(end_to_end_id="E2E-BIG", amount="100.00")]))
    mid = r.json()["id"]
    await wait_for_state(routed, mid, {"answered"})
    uetr = next(x["uetrs"][0] for x in read_receipts(tmp_path / "receipts.jsonl") if x["msg_id"] == "RET-BIG")
    too_much = pacs004(
        msg_id="RTR-BIG", original_msg_id="RET-BIG", txs=[Orig(end_to_end_id="E2E-BIG", uetr=uetr, amount="1000000.00")]
    )
    async with httpx.AsyncClient(
        base_url=routed.base_url, headers={"Authorization": "Bearer sim-bank-token"}, timeout=30
    ) as bank:
        r = await bank.post("/v1/messages", content=too_much, headers={"Content-Type": "application/xml"})
        assert r.status_code == 422, r.text
        assert [e["code"] for e in r.json()["errors"]] == ["AM09"]
        assert "<Cd>AM09</Cd>" in r.json()["status_report"]
        body = await wait_for_state(routed, mid, {"answered"})
        assert "returned" not in kinds(body)
        assert not [x for x in await reports_for(routed) if x["message_id"] == mid and x["status"] == "RETURN"]
        # The amount it really carried is taken back as usual.
        right = pacs004(msg_id="RTR-OK", original_msg_id="RET-BIG", txs=[Orig(end_to_end_id="E2E-BIG", uetr=uetr)])
        r = await bank.post("/v1/messages", content=right, headers={"Content-Type": "application/xml"})
    assert r.status_code == 202, r.text
    await wait_for_state(routed, mid, {"returned"})


async def test_when_even_the_report_cannot_be_built_the_part_still_fails_and_delivery_goes_on(
    routed: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_report(*args: Any, **kw: Any) -> Any:
        raise LookupError("simulated: the original cannot be read")

    break_builder(monkeypatch, b"NOREPORT")
    monkeypatch.setattr("switchd.outgoing.OriginatorReports.rejection", no_report)
    r = await post(routed, pacs008(msg_id="NOREPORT-1", txs=[Tx(end_to_end_id="E2E-NR")]))
    mid = r.json()["id"]
    body = await wait_for_state(routed, mid, {"failed"})
    assert "delivery_failed" in kinds(body) and "reported" not in kinds(body)
    r = await post(routed, pacs008(msg_id="AFTER-NR", txs=[Tx(end_to_end_id="E2E-ANR")]))
    await wait_for_state(routed, r.json()["id"], {"answered", "delivered"})
