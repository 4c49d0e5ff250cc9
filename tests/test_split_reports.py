"""Reports on a message split across banks: the originator gets one report per bank, and each names every
transaction of its part with that bank's status for it (the real daemon in-process, two simulated banks routed by
creditor agent, the reports validated against the project's XSDs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from lxml import etree

from switchd.errors import Finding
from switchd.iso.refs import extract_refs
from switchd.iso.reports import build_status_report
from tests.builders import PmtInf, Tx, def_of, message_def, pacs008, pain001, project_schema, split, stable_uetr
from tests.conftest import RunningDaemon, sim_bank, start_daemon, write_config

TO_B = {"cdtr_agt_bic": "EEEEFRPPXXX", "creditor_iban": "FR1420041010050500013M02606"}


def two_banks(tmp_path: Path) -> str:
    """Bank A (routes: creditor agent BBBB*) rejects EndToEndIds REJECT* with AC04 and accepts the rest (ACSC); bank
    B (everything else) accepts with ACSP. Each answers through the switch's own intake, as a real bank would."""
    bank_a = sim_bank(
        tmp_path / "a.jsonl",
        name="sim-a",
        participant="sim-a",
        bic="CCCCGB2LXXX",
        options='rules = [{ end_to_end_id = "REJECT*", reject = "AC04" }]',
        route="to-a",
        match='creditor_agent = "BBBB*"',
    )
    bank_b = sim_bank(
        tmp_path / "b.jsonl", name="sim-b", participant="sim-b", bic="DDDDFRPPXXX", options='status = "ACSP"'
    )
    return bank_a + bank_b


@pytest.fixture
async def banks(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[RunningDaemon]:
    running = await start_daemon(write_config(tmp_path, extra=two_banks(tmp_path)), nursery)
    yield running
    await running.stop()


@dataclass(frozen=True)
class Listed:
    """One TxInfAndSts of a report: the original's ids, its status and reason codes (PmtInf id in pain.002)."""

    end_to_end_id: str | None
    tx_id: str | None
    instr_id: str | None
    uetr: str | None
    status: str | None
    reasons: tuple[str, ...]
    pmt_inf_id: str | None = None


class Report:
    """A forwarded report, validated against its XSD, read with the `r:` prefix bound to its namespace."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.doc = etree.fromstring(body["xml"].encode())
        self.ns = {"r": etree.QName(self.doc).namespace}
        message_id = self.ns["r"].rsplit(":", 1)[1]
        assert message_id == body["message_type"]
        schema = project_schema(message_id)
        assert schema.validate(self.doc), schema.error_log

    def text(self, path: str) -> list[str]:
        return [str(v) for v in self.doc.xpath(path, namespaces=self.ns)]

    def txs(self) -> list[Listed]:
        out = []
        for el in self.doc.xpath("//r:TxInfAndSts", namespaces=self.ns):
            pmt_inf = el.getparent().findtext("r:OrgnlPmtInfId", namespaces=self.ns)
            out.append(
                Listed(
                    el.findtext("r:OrgnlEndToEndId", namespaces=self.ns),
                    el.findtext("r:OrgnlTxId", namespaces=self.ns),
                    el.findtext("r:OrgnlInstrId", namespaces=self.ns),
                    el.findtext("r:OrgnlUETR", namespaces=self.ns),
                    el.findtext("r:TxSts", namespaces=self.ns),
                    tuple(str(c) for c in el.xpath("r:StsRsnInf/r:Rsn/r:Cd/text()", namespaces=self.ns)),
                    pmt_inf,
                )
            )
        return out

    def pmt_inf_statuses(self) -> dict[str, str]:
        return {
            str(el.findtext("r:OrgnlPmtInfId", namespaces=self.ns)): str(el.findtext("r:PmtInfSts", namespaces=self.ns))
            for el in self.doc.xpath("//r:OrgnlPmtInfAndSts", namespaces=self.ns)
        }


async def post_and_collect(d: RunningDaemon, raw: bytes, expected: int) -> list[Report]:
    """Post `raw` as bank-a and wait until the originator's feed holds `expected` reports on it, oldest first."""
    async with d.client("bank-a") as c:
        r = await c.post("/v1/messages", content=raw, headers={"Content-Type": "application/xml"})
        assert r.status_code == 202, r.text
        mid = r.json()["id"]
        with trio.fail_after(20):
            while True:
                mine = [x for x in (await c.get("/v1/reports")).json()["reports"] if x["message_id"] == mid]
                if len(mine) >= expected:
                    break
                await trio.sleep(0.05)
        body = (await c.get(f"/v1/messages/{mid}")).json()
    assert len(mine) == expected, mine
    routed = [e["detail"]["connector"] for e in body["events"] if e["kind"] == "routed"]
    assert len(routed) == expected, body["events"]
    return [Report(x) for x in mine]


def part_reports(reports: list[Report], only_a: str, only_b: str, message_type: str, msg_id: str) -> list[Report]:
    """Bank A's and bank B's report on the message `msg_id` split between them (each known by the EndToEndId of
    a transaction only it was sent), once each is checked to be a `message_type` report with group status PART."""
    out = {}
    for rep in reports:
        listed = {t.end_to_end_id for t in rep.txs()}
        (bank,) = {bank for e2e, bank in ((only_a, "a"), (only_b, "b")) if e2e in listed}
        out[bank] = rep
        assert rep.body["status"] == "PART" and rep.body["message_type"] == message_type
        assert rep.text("//r:OrgnlGrpInfAndSts/r:OrgnlMsgId/text()") == [msg_id]
        assert rep.text("//r:OrgnlGrpInfAndSts/r:GrpSts/text()") == ["PART"]
    return [out["a"], out["b"]]


async def test_split_pain001_each_report_lists_every_transaction_of_its_part_with_its_status(
    banks: RunningDaemon,
) -> None:
    """pain.001 -> pain.002.001.10. Bank A answers PART and lists only its rejection (as banks that list the
    exceptions do): the transaction it left out is reported accepted (ACCP), the rejected one RJCT with the
    bank's AC04. Bank B answers ACSP for its one transaction. Before the fix bank B's report listed nothing and
    bank A's listed only the rejection: the originator could not tell which transactions went through."""
    p1 = [
        Tx(end_to_end_id="A-1", instr_id="I-A1"),
        Tx(end_to_end_id="B-1", instr_id="I-B1", **TO_B),
        Tx(end_to_end_id="REJECT-1", instr_id="I-R1"),
    ]
    p2 = [Tx(end_to_end_id="A-2", instr_id="I-A2")]
    raw = pain001(msg_id="SPLIT-PAIN-1", pmt_infs=[PmtInf("PMT-1", p1), PmtInf("PMT-2", p2)])
    reports = await post_and_collect(banks, raw, expected=2)
    a, b = part_reports(reports, "A-1", "B-1", "pain.002.001.10", "SPLIT-PAIN-1")

    assert a.txs() == [
        Listed("A-1", None, "I-A1", stable_uetr("A-1"), "ACCP", (), "PMT-1"),
        Listed("REJECT-1", None, "I-R1", stable_uetr("REJECT-1"), "RJCT", ("AC04",), "PMT-1"),
        Listed("A-2", None, "I-A2", stable_uetr("A-2"), "ACCP", (), "PMT-2"),
    ]
    # PMT-1 went partly to bank B: partly accepted here. PMT-2 went wholly to bank A, which accepted it.
    assert a.pmt_inf_statuses() == {"PMT-1": "PART", "PMT-2": "ACCP"}

    assert b.txs() == [Listed("B-1", None, "I-B1", stable_uetr("B-1"), "ACSP", (), "PMT-1")]
    assert b.pmt_inf_statuses() == {"PMT-1": "PART"}


async def test_split_pacs008_each_report_lists_every_transaction_with_the_banks_own_status(
    banks: RunningDaemon,
) -> None:
    """pacs.008 -> pacs.002.001.10. Each bank lists each transaction it got (A: ACSC and RJCT/AC04, B: ACSP):
    those statuses are passed on as the bank gave them, each with the originator's EndToEndId, TxId, InstrId and
    UETR. Before the fix bank B's report listed nothing and bank A's only the rejection."""
    txs = [
        Tx(end_to_end_id="S-1", tx_id="T-1", instr_id="IN-1"),
        Tx(end_to_end_id="S-2", tx_id="T-2", **TO_B),
        Tx(end_to_end_id="REJECT-3", tx_id="T-3"),
        Tx(end_to_end_id="S-4", tx_id="T-4", **TO_B),
    ]
    reports = await post_and_collect(banks, pacs008(msg_id="SPLIT-PACS-1", txs=txs), expected=2)
    a, b = part_reports(reports, "S-1", "S-2", "pacs.002.001.10", "SPLIT-PACS-1")
    assert a.txs() == [
        Listed("S-1", "T-1", "IN-1", stable_uetr("S-1"), "ACSC", ()),
        Listed("REJECT-3", "T-3", None, stable_uetr("REJECT-3"), "RJCT", ("AC04",)),
    ]
    assert b.txs() == [
        Listed("S-2", "T-2", None, stable_uetr("S-2"), "ACSP", ()),
        Listed("S-4", "T-4", None, stable_uetr("S-4"), "ACSP", ()),
    ]
    # Between them, the two reports name every transaction of the message once.
    assert sorted(t.end_to_end_id or "" for r in reports for t in r.txs()) == ["REJECT-3", "S-1", "S-2", "S-4"]


async def test_a_message_that_went_whole_to_one_bank_keeps_its_report_as_before(banks: RunningDaemon) -> None:
    """Not split: the report is the bank's answer on the whole message, PART with the rejected transaction
    listed and the accepted one covered by the group status (unchanged by the split-report fix)."""
    txs = [Tx(end_to_end_id="W-1", tx_id="T-1"), Tx(end_to_end_id="REJECT-W", tx_id="T-2")]
    (rep,) = await post_and_collect(banks, pacs008(msg_id="WHOLE-1", txs=txs), expected=1)
    assert rep.text("//r:GrpSts/text()") == ["PART"]
    assert rep.txs() == [Listed("REJECT-W", "T-2", None, stable_uetr("REJECT-W"), "RJCT", ("AC04",))]
    (rep,) = await post_and_collect(banks, pacs008(msg_id="WHOLE-2", txs=[Tx(end_to_end_id="W-2", **TO_B)]), 1)
    assert rep.text("//r:GrpSts/text()") == ["ACSP"] and rep.txs() == []


# -- build_status_report's tx_statuses, in both report versions ---------------------------------------------------

NOW = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("report_id", "original_id"),
    [
        ("pacs.002.001.10", "pacs.008.001.08"),
        ("pacs.002.001.11", "pacs.008.001.09"),
        ("pain.002.001.10", "pain.001.001.09"),
        ("pain.002.001.11", "pain.001.001.10"),
    ],
)
def test_tx_statuses_list_the_named_transactions_with_their_status_and_reasons(
    report_id: str, original_id: str
) -> None:
    """Named transactions are listed with their status (a PDNG one with the bank's reason), a rejected one with
    its findings, an unnamed one without findings not at all; the report is valid in either version."""
    txs = [Tx(end_to_end_id=f"E-{i}", tx_id=f"T-{i}", instr_id=f"I-{i}") for i in range(4)]
    pain = report_id.startswith("pain")
    raw = pain001(pmt_infs=[PmtInf("P-1", txs[:2]), PmtInf("P-2", txs[2:])]) if pain else pacs008(txs=txs)
    _, doc = split(raw)
    refs = extract_refs(def_of(doc), doc)
    t = refs.transactions
    findings = [Finding("AC04", "closed", path=t[1].path), Finding("NOAS", "no answer yet", path=t[2].path)]
    data = build_status_report(
        report_def=message_def(report_id),
        original_def=message_def(original_id),
        original=refs,
        original_msg_id=None,
        findings=findings,
        report_msg_id="RPT-1",
        created_at=NOW,
        group_status="PART",
        tx_statuses={0: "ACSC", 1: "RJCT", 2: "PDNG"},
    )
    rep = Report({"xml": data.decode(), "message_type": report_id})
    uetrs = [stable_uetr(f"E-{i}") for i in range(4)]
    tx_ids = [None if pain else f"T-{i}" for i in range(4)]
    pmt = ["P-1", "P-1", "P-2"] if pain else [None] * 3
    assert rep.txs() == [
        Listed("E-0", tx_ids[0], "I-0", uetrs[0], "ACSC", (), pmt[0]),
        Listed("E-1", tx_ids[1], "I-1", uetrs[1], "RJCT", ("AC04",), pmt[1]),
        Listed("E-2", tx_ids[2], "I-2", uetrs[2], "PDNG", ("NOAS",), pmt[2]),
    ]
    # pain.002: P-1 is wholly listed but mixed, P-2 only partly listed (E-3 is not in the report); pacs.002 has none.
    assert rep.pmt_inf_statuses() == ({"P-1": "PART", "P-2": "PART"} if pain else {})


def test_a_pain002_pmt_inf_wholly_listed_with_one_status_takes_it_and_bad_statuses_are_refused() -> None:
    txs = [Tx(end_to_end_id="E-0"), Tx(end_to_end_id="E-1")]
    _, doc = split(pain001(pmt_infs=[PmtInf("P-1", txs)]))
    refs = extract_refs(def_of(doc), doc)
    args: dict[str, Any] = {
        "report_def": message_def("pain.002.001.10"),
        "original_def": message_def("pain.001.001.09"),
        "original": refs,
        "original_msg_id": None,
        "findings": [],
        "report_msg_id": "RPT-1",
        "created_at": NOW,
        "group_status": "PART",
    }
    data = build_status_report(**args, tx_statuses={0: "ACSP", 1: "ACSP"})
    rep = Report({"xml": data.decode(), "message_type": "pain.002.001.10"})
    assert rep.pmt_inf_statuses() == {"P-1": "ACSP"}
    assert [t.status for t in rep.txs()] == ["ACSP", "ACSP"]
    with pytest.raises(ValueError, match="not an ISO status code"):
        build_status_report(**args, tx_statuses={0: "ACCEPTED"})
