"""The simulated bank: durable receipts on disk, status reports that validate and correlate, rejections, silence,
delays (on trio's virtual clock), injected delivery failures and refusal of unreadable payloads."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing
from lxml import etree

from adapters.local.simbank import AnswerRule, FailRule, SimBank, SimBankSettings, read_receipts
from switchd.connectors import Delivery, DeliveryFailed
from switchd.iso.catalogue import Catalogue
from switchd.iso.refs import extract_refs
from switchd.iso.rules import check_rules, check_sender_authority
from switchd.iso.validate import SchemaSet
from switchd.iso.xml import ParsedMessage, parse_message
from switchd.schemas import load_schemas
from tests.builders import SCHEMAS, PmtInf, Tx, make_txs, pacs008, pain001, split, stable_uetr

BANK_BIC = "BBBBDEFFXXX"
SWITCH_BIC = "SWCHGB2LXXX"
ISO = "urn:iso:std:iso:20022:tech:xsd:"


@pytest.fixture(scope="module")
def schema_set() -> tuple[Catalogue, SchemaSet]:
    return load_schemas(SCHEMAS)


class Sink:
    """The switch's side of the bank: takes reports, answers with a fixed status, lets a test wait for them."""

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.reports: list[bytes] = []
        self.send, self.receive = trio.open_memory_channel[bytes](math.inf)

    async def __call__(self, data: bytes) -> int:
        self.reports.append(data)
        self.send.send_nowait(data)
        return self.status

    async def next(self) -> bytes:
        with trio.fail_after(3600):  # a safety net (virtual time under autojump_clock)
            return await self.receive.receive()


def settings(tmp_path: Path, **overrides: object) -> SimBankSettings:
    base = SimBankSettings(bics=(BANK_BIC,), receipts=tmp_path / "bank" / "receipts.jsonl", switch_bic=SWITCH_BIC)
    return replace(base, **overrides)  # type: ignore[arg-type]


async def start(
    nursery: trio.Nursery,
    schema_set: tuple[Catalogue, SchemaSet],
    s: SimBankSettings,
    sink: Sink,
    *,
    validate: bool = False,
) -> SimBank:
    catalogue, schemas = schema_set
    bank = SimBank("simbank", s, sink, catalogue, schemas=schemas if validate else None)
    await nursery.start(bank.run)
    return bank


def delivery(payload: bytes, *, outbox_id: str = "O-1", attempt: int = 1, msg_id: str = "MSG-1") -> Delivery:
    return Delivery(
        outbox_id=outbox_id,
        message_id="M-1",
        message_type="pacs.008.001.08",
        msg_id=msg_id,
        payload=payload,
        attempt=attempt,
        possible_duplicate=attempt > 1,
    )


def with_possible_duplicate(payload: bytes) -> bytes:
    hdr, _ = split(payload)
    assert hdr is not None
    etree.SubElement(hdr, f"{{{hdr.nsmap[None]}}}PssblDplct").text = "true"
    root = hdr.getparent()
    assert root is not None
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def check_report(schema_set: tuple[Catalogue, SchemaSet], data: bytes, report_id: str) -> ParsedMessage:
    """Parse a report as the switch would, and assert it is valid (XSD, AppHdr, rules, sender authority)."""
    catalogue, schemas = schema_set
    parsed = parse_message(data, max_bytes=1 << 20)
    defn = catalogue.by_namespace(parsed.namespace)
    assert defn is not None and defn.id == report_id
    assert schemas.validate(defn, parsed.document) == []
    assert parsed.app_hdr is not None
    hdr_def = catalogue.header(parsed.app_hdr_namespace or "")
    assert hdr_def is not None
    assert schemas.validate(hdr_def, parsed.app_hdr) == []
    refs = extract_refs(defn, parsed.document)
    assert check_rules(defn, parsed.document, refs, parsed.app_hdr) == []
    assert check_sender_authority(defn, parsed.document, refs, parsed.app_hdr, frozenset({BANK_BIC})) == []
    return parsed


def texts(el: etree._Element, path: str) -> list[str]:
    return [t.text for t in el.iterfind(path, {"p": el.nsmap[None]})]


async def test_acsc_report_correlates_and_receipt_is_on_disk(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path)
    bank = await start(nursery, schema_set, s, sink)
    txs = make_txs(2)
    payload = pacs008(msg_id="MSG-ACSC", txs=txs)
    receipt = await bank.deliver(delivery(payload, outbox_id="O-ACSC"))
    assert receipt

    # on disk when deliver returned, before any answer
    (rec,) = read_receipts(s.receipts)
    assert rec["receipt"] == receipt
    assert rec["outbox_id"] == "O-ACSC"
    assert rec["msg_id"] == "MSG-ACSC"
    assert rec["message_type"] == "pacs.008.001.08"
    assert rec["attempt"] == 1
    assert rec["possible_duplicate"] is False
    assert rec["sha256"] == hashlib.sha256(payload).hexdigest()
    assert rec["end_to_end_ids"] == ["E2E-1", "E2E-2"]
    assert rec["uetrs"] == [stable_uetr("E2E-1"), stable_uetr("E2E-2")]
    assert rec["answer"] == "ACSC"

    report = check_report(schema_set, await sink.next(), "pacs.002.001.10")
    doc, hdr = report.document, report.app_hdr
    assert hdr is not None
    assert texts(hdr, "p:Fr/p:FIId/p:FinInstnId/p:BICFI") == [BANK_BIC]
    assert texts(hdr, "p:To/p:FIId/p:FinInstnId/p:BICFI") == [SWITCH_BIC]
    assert texts(doc, "p:FIToFIPmtStsRpt/p:GrpHdr/p:InstgAgt/p:FinInstnId/p:BICFI") == [BANK_BIC]
    assert texts(doc, "p:FIToFIPmtStsRpt/p:GrpHdr/p:InstdAgt/p:FinInstnId/p:BICFI") == ["AAAAUS33XXX"]
    assert texts(doc, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:OrgnlMsgId") == ["MSG-ACSC"]
    assert texts(doc, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:OrgnlMsgNmId") == ["pacs.008.001.08"]
    assert texts(doc, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:GrpSts") == ["ACSC"]
    tx_path = "p:FIToFIPmtStsRpt/p:TxInfAndSts/"
    assert texts(doc, tx_path + "p:OrgnlEndToEndId") == ["E2E-1", "E2E-2"]
    assert texts(doc, tx_path + "p:OrgnlTxId") == ["TX-1", "TX-2"]
    assert texts(doc, tx_path + "p:OrgnlUETR") == [stable_uetr("E2E-1"), stable_uetr("E2E-2")]
    assert texts(doc, tx_path + "p:TxSts") == ["ACSC", "ACSC"]
    stats = bank.statistics()
    assert (stats.received, stats.answered, stats.refused) == (1, 1, 0)


async def test_partial_rejection_names_the_rejected_transaction(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path, rules=(AnswerRule("E2E-2", reject="AC04"), AnswerRule("E2E-3*", reject="AM04")))
    bank = await start(nursery, schema_set, s, sink)
    await bank.deliver(delivery(pacs008(msg_id="MSG-PART", txs=make_txs(3))))
    doc = check_report(schema_set, await sink.next(), "pacs.002.001.10").document
    assert texts(doc, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:GrpSts") == ["PART"]
    txs = doc.findall("p:FIToFIPmtStsRpt/p:TxInfAndSts", {"p": doc.nsmap[None]})
    assert [texts(t, "p:OrgnlEndToEndId") for t in txs] == [["E2E-1"], ["E2E-2"], ["E2E-3"]]
    assert [texts(t, "p:TxSts") for t in txs] == [["ACSC"], ["RJCT"], ["RJCT"]]
    assert [texts(t, "p:StsRsnInf/p:Rsn/p:Cd") for t in txs] == [[], ["AC04"], ["AM04"]]
    assert texts(txs[1], "p:OrgnlUETR") == [stable_uetr("E2E-2")]
    assert read_receipts(s.receipts)[0]["answer"] == "PART"


async def test_every_transaction_rejected_is_rjct(schema_set, nursery, tmp_path):
    sink = Sink()
    bank = await start(nursery, schema_set, settings(tmp_path, rules=(AnswerRule("*", reject="AC04"),)), sink)
    await bank.deliver(delivery(pacs008(msg_id="MSG-RJCT", txs=make_txs(2))))
    doc = check_report(schema_set, await sink.next(), "pacs.002.001.10").document
    assert texts(doc, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:GrpSts") == ["RJCT"]
    assert texts(doc, "p:FIToFIPmtStsRpt/p:TxInfAndSts/p:TxSts") == ["RJCT", "RJCT"]
    assert texts(doc, "p:FIToFIPmtStsRpt/p:TxInfAndSts/p:StsRsnInf/p:Rsn/p:Cd") == ["AC04", "AC04"]


async def test_pain001_gets_a_valid_pain002(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path, rules=(AnswerRule("E2E-2", reject="AC04"),))
    bank = await start(nursery, schema_set, s, sink)
    payload = pain001(msg_id="PAIN-9", pmt_infs=[PmtInf(txs=make_txs(2))], app_hdr=True)
    await bank.deliver(delivery(payload))
    doc = check_report(schema_set, await sink.next(), "pain.002.001.10").document
    assert texts(doc, "p:CstmrPmtStsRpt/p:OrgnlGrpInfAndSts/p:OrgnlMsgId") == ["PAIN-9"]
    assert texts(doc, "p:CstmrPmtStsRpt/p:OrgnlGrpInfAndSts/p:GrpSts") == ["PART"]
    rejected = "p:CstmrPmtStsRpt/p:OrgnlPmtInfAndSts/p:TxInfAndSts/"
    assert texts(doc, rejected + "p:OrgnlEndToEndId") == ["E2E-2"]
    assert texts(doc, rejected + "p:StsRsnInf/p:Rsn/p:Cd") == ["AC04"]


async def test_silent_rule_never_answers(schema_set, nursery, tmp_path, autojump_clock):
    sink = Sink()
    s = settings(tmp_path, rules=(AnswerRule("E2E-SILENT", silent=True),))
    bank = await start(nursery, schema_set, s, sink)
    await bank.deliver(delivery(pacs008(msg_id="MSG-S", txs=[Tx(end_to_end_id="E2E-SILENT")]), outbox_id="O-S"))
    await bank.deliver(delivery(pacs008(msg_id="MSG-T", txs=[Tx(end_to_end_id="E2E-TALK")]), outbox_id="O-T"))
    first = check_report(schema_set, await sink.next(), "pacs.002.001.10").document
    assert texts(first, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:OrgnlMsgId") == ["MSG-T"]
    await trio.sleep(3600)  # virtual: an hour passes and the silent message is still unanswered
    assert len(sink.reports) == 1
    assert [r["answer"] for r in read_receipts(s.receipts)] == ["silent", "ACSC"]
    assert bank.statistics().pending_answers == 0


async def test_answers_wait_for_their_delay(schema_set, nursery, tmp_path, autojump_clock):
    sink = Sink()
    s = settings(tmp_path, delay_ms=2_000, rules=(AnswerRule("E2E-SLOW", reject="AM04", delay_ms=30_000),))
    bank = await start(nursery, schema_set, s, sink)
    delivered = {}
    for msg_id, e2e in (("MSG-QUICK", "E2E-Q"), ("MSG-SLOW", "E2E-SLOW")):
        await bank.deliver(delivery(pacs008(msg_id=msg_id, txs=[Tx(end_to_end_id=e2e)]), outbox_id=msg_id))
        delivered[msg_id] = trio.current_time()
    answered = {}
    for _ in range(2):
        doc = parse_message(await sink.next(), max_bytes=1 << 20).document
        answered[texts(doc, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:OrgnlMsgId")[0]] = trio.current_time()
    # Virtual clock, so exact: each answer waited at least its delay after its receipt. (The clock also jumps
    # while a receipt's fsync runs in a thread, so only lower bounds hold.)
    assert answered["MSG-QUICK"] - delivered["MSG-QUICK"] >= 2.0
    assert answered["MSG-SLOW"] - delivered["MSG-SLOW"] >= 30.0


async def test_pending_answers_bound_holds_back_deliveries(schema_set, nursery, tmp_path, autojump_clock):
    sink = Sink()
    s = settings(tmp_path, delay_ms=10_000, max_pending_answers=1)
    bank = await start(nursery, schema_set, s, sink)
    t0 = trio.current_time()
    await bank.deliver(delivery(pacs008(msg_id="MSG-A"), outbox_id="O-A"))
    assert bank.statistics().pending_answers == 1
    await bank.deliver(delivery(pacs008(msg_id="MSG-B"), outbox_id="O-B"))
    # the second receipt waited for the first answer's room
    assert trio.current_time() - t0 >= 10.0
    assert len(sink.reports) == 1
    assert len(read_receipts(s.receipts)) == 2


async def test_injected_failures_first_n_then_delivered(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path, failures=(FailRule(times=2),))
    bank = await start(nursery, schema_set, s, sink)
    payload = pacs008(msg_id="MSG-F")
    for attempt in (1, 2):
        with pytest.raises(DeliveryFailed) as info:
            await bank.deliver(delivery(payload, attempt=attempt))
        assert info.value.retryable is True
    assert read_receipts(s.receipts) == []  # a failed delivery is not received
    await bank.deliver(delivery(payload, attempt=3))
    assert [r["attempt"] for r in read_receipts(s.receipts)] == [3]
    assert bank.statistics().refused == 2


async def test_injected_failure_by_glob_can_be_final(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path, failures=(FailRule("E2E-BAD*", retryable=False), FailRule("MSG-DOWN")))
    bank = await start(nursery, schema_set, s, sink)
    with pytest.raises(DeliveryFailed) as info:
        await bank.deliver(delivery(pacs008(msg_id="MSG-1", txs=[Tx(end_to_end_id="E2E-BAD-7")])))
    assert info.value.retryable is False
    for _ in range(3):  # `times` None: every attempt fails
        with pytest.raises(DeliveryFailed) as info:
            await bank.deliver(delivery(pacs008(msg_id="MSG-DOWN")))
        assert info.value.retryable is True
    await bank.deliver(delivery(pacs008(msg_id="MSG-FINE")))
    assert [r["msg_id"] for r in read_receipts(s.receipts)] == ["MSG-FINE"]


async def test_lost_acknowledgement_makes_the_retry_a_marked_duplicate(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path, failures=(FailRule("MSG-LOST", times=1, after_receipt=True),))
    bank = await start(nursery, schema_set, s, sink)
    payload = pacs008(msg_id="MSG-LOST")
    with pytest.raises(DeliveryFailed) as info:
        await bank.deliver(delivery(payload, outbox_id="O-L", attempt=1))
    assert info.value.retryable is True
    await bank.deliver(delivery(with_possible_duplicate(payload), outbox_id="O-L", attempt=2))
    receipts = read_receipts(s.receipts)
    assert [(r["outbox_id"], r["attempt"], r["possible_duplicate"]) for r in receipts] == [
        ("O-L", 1, False),
        ("O-L", 2, True),
    ]
    assert receipts[1]["delivery_possible_duplicate"] is True
    await sink.next()
    await sink.next()  # the bank answered both: it processed the message twice, as the receipts show


@pytest.mark.parametrize(
    "payload",
    [
        b"not xml at all",
        b"",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
        b"<Document xmlns='urn:example:not-iso'/>",
        b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08'><FIToFICstmrCdtTrf>",
    ],
)
async def test_unreadable_payload_is_refused_not_crashed(schema_set, nursery, tmp_path, payload):
    sink = Sink()
    s = settings(tmp_path)
    bank = await start(nursery, schema_set, s, sink)
    with pytest.raises(DeliveryFailed) as info:
        await bank.deliver(delivery(payload))
    assert info.value.retryable is False
    await bank.deliver(delivery(pacs008(msg_id="MSG-AFTER")))  # still serving
    assert [r["msg_id"] for r in read_receipts(s.receipts)] == ["MSG-AFTER"]
    await sink.next()


async def test_schema_invalid_payload_is_refused_when_validating(schema_set, nursery, tmp_path):
    sink = Sink()
    bank = await start(nursery, schema_set, settings(tmp_path), sink, validate=True)
    with pytest.raises(DeliveryFailed) as info:
        await bank.deliver(delivery(pacs008(sttlm_mtd="NOPE")))
    assert info.value.retryable is False
    assert "pacs.008.001.08" in info.value.reason
    await bank.deliver(delivery(pacs008()))
    assert len(read_receipts(tmp_path / "bank" / "receipts.jsonl")) == 1


async def test_messages_it_does_not_answer_are_still_recorded(schema_set, nursery, tmp_path, autojump_clock):
    sink = Sink()
    s = settings(tmp_path)
    bank = await start(nursery, schema_set, s, sink)
    cancel = b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.056.001.08'><FIToFIPmtCxlReq/></Document>"
    statement = b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'><BkToCstmrStmt/></Document>"
    await bank.deliver(delivery(cancel, msg_id="CXL-1"))
    await bank.deliver(delivery(statement, msg_id="STMT-1"))
    await trio.sleep(60)
    recs = read_receipts(s.receipts)
    assert [(r["message_type"], r["msg_id"], r["answer"]) for r in recs] == [
        ("camt.056.001.08", "CXL-1", "none"),
        ("camt.053.001.08", "STMT-1", "none"),
    ]
    assert sink.reports == []


async def test_sink_refusal_does_not_stop_the_bank(schema_set, nursery, tmp_path):
    refusing = Sink(status=503)
    s = settings(tmp_path)
    bank = await start(nursery, schema_set, s, refusing)
    await bank.deliver(delivery(pacs008(msg_id="MSG-1"), outbox_id="O-1"))
    await refusing.next()

    async def broken(data: bytes) -> int:
        raise RuntimeError("the switch fell over")

    bank2 = SimBank("simbank-2", replace(s, receipts=tmp_path / "r2.jsonl"), broken, schema_set[0])
    await nursery.start(bank2.run)
    await bank2.deliver(delivery(pacs008(msg_id="MSG-2")))
    with trio.fail_after(30):
        while bank2.statistics().pending_answers:
            await trio.sleep(0.01)
    await bank2.deliver(delivery(pacs008(msg_id="MSG-3")))  # still serving
    assert bank.statistics().answers_refused == 1
    assert bank2.statistics().received == 2
    assert bank2.statistics().answers_refused >= 1


async def test_many_concurrent_deliveries_all_recorded_and_answered(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path)
    bank = await start(nursery, schema_set, s, sink)
    n = 200
    receipts: dict[str, str | None] = {}

    async def one(i: int) -> None:
        payload = pacs008(msg_id=f"MSG-{i}", txs=[Tx(end_to_end_id=f"E2E-{i}")])
        receipts[f"O-{i}"] = await bank.deliver(delivery(payload, outbox_id=f"O-{i}"))

    async with trio.open_nursery() as inner:
        for i in range(n):
            inner.start_soon(one, i)
    on_disk = read_receipts(s.receipts)
    assert sorted(r["outbox_id"] for r in on_disk) == sorted(receipts)
    assert {r["outbox_id"]: r["receipt"] for r in on_disk} == receipts
    answered = set()
    for _ in range(n):
        doc = parse_message(await sink.next(), max_bytes=1 << 20).document
        answered.add(texts(doc, "p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:OrgnlMsgId")[0])
    assert answered == {f"MSG-{i}" for i in range(n)}


async def test_not_running_is_retryable_and_receipts_survive_a_restart(schema_set, nursery, tmp_path):
    sink = Sink()
    s = settings(tmp_path)
    catalogue, _ = schema_set
    bank = SimBank("simbank", s, sink, catalogue)
    with pytest.raises(DeliveryFailed) as info:
        await bank.deliver(delivery(pacs008()))
    assert info.value.retryable is True
    async with bank:
        await bank.deliver(delivery(pacs008(msg_id="MSG-1"), outbox_id="O-1"))
    with pytest.raises(DeliveryFailed) as info:
        await bank.deliver(delivery(pacs008(msg_id="MSG-2")))
    assert info.value.retryable is True

    # a crash mid-write left a torn line: readers skip it, the next bank starts on a fresh line
    with s.receipts.open("ab") as f:
        f.write(b'{"receipt":"torn","outb')
    async with SimBank("simbank", s, sink, catalogue) as again:
        await again.deliver(delivery(pacs008(msg_id="MSG-3"), outbox_id="O-3"))
    assert [r["outbox_id"] for r in read_receipts(s.receipts)] == ["O-1", "O-3"]


def test_settings_refuse_nonsense(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match="BIC"):
        SimBankSettings(bics=("nope",), receipts=path)
    with pytest.raises(ValueError, match="at least one BIC"):
        SimBankSettings(bics=(), receipts=path)
    with pytest.raises(ValueError, match="accepting"):
        SimBankSettings(bics=(BANK_BIC,), receipts=path, status="RJCT")
    with pytest.raises(ValueError, match="reason code"):
        AnswerRule("*", reject="TOO-LONG")
    with pytest.raises(ValueError, match="not both"):
        AnswerRule("*", reject="AC04", silent=True)
