"""extract_refs / searchable_refs over builder-made pacs.008, pain.001 and the status reports answering them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from switchd.errors import Finding
from switchd.iso.catalogue import MessageDef
from switchd.iso.refs import extract_refs, searchable_refs
from switchd.iso.reports import build_status_report
from tests.builders import (
    OMIT,
    PmtInf,
    Tx,
    catalogue,
    def_of,
    make_txs,
    message_def,
    pacs008,
    pain001,
    project_schema,
    split,
    stable_uetr,
)
from tests.iso import messages as msgs

CATALOGUE = catalogue()
PACS008 = message_def("pacs.008.001.08")
PAIN001 = message_def("pain.001.001.09")
PACS002 = message_def("pacs.002.001.10")
PAIN002 = message_def("pain.002.001.10")
NOW = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)


def refs_of(defn: MessageDef | None, data: bytes):
    assert defn is not None
    return extract_refs(defn, split(data)[1])


def test_pacs008_group_and_transactions():
    txs = [
        Tx(end_to_end_id="E2E-1", tx_id="TX-1", instr_id="INS-1", amount="100.00"),
        Tx(end_to_end_id="E2E-2", tx_id="TX-2", amount="250.5", ccy="EUR", cdtr_agt_bic="CCCCGB2L"),
    ]
    refs = refs_of(PACS008, pacs008(msg_id="M-7", txs=txs))
    assert refs.message_id == "pacs.008.001.08"
    assert refs.path == "/Document/FIToFICstmrCdtTrf"
    assert (refs.msg_id, refs.cre_dt_tm, refs.nb_of_txs) == ("M-7", "2026-11-23T10:00:00Z", "2")
    assert refs.ctrl_sum == Decimal("350.50") and refs.ctrl_sum_text == "350.50"
    assert (refs.ttl_amount, refs.ttl_ccy) == (Decimal("350.50"), "EUR")
    assert (refs.instg_agt_bic, refs.instd_agt_bic) == ("AAAAUS33XXX", "BBBBDEFFXXX")
    assert refs.payment_infos == ()
    first, second = refs.transactions
    assert first.path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[1]"
    assert second.path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]"
    assert (first.end_to_end_id, first.tx_id, first.instr_id) == ("E2E-1", "TX-1", "INS-1")
    assert first.uetr == stable_uetr("E2E-1")
    assert (second.amount, second.amount_text, second.currency) == (Decimal("250.5"), "250.5", "EUR")
    assert second.amount_path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]/IntrBkSttlmAmt"
    assert (second.dbtr_agt_bic, second.cdtr_agt_bic) == ("AAAAUS33XXX", "CCCCGB2L")
    assert (second.instg_agt_bic, second.instd_agt_bic) == (None, None)
    assert [t.index for t in refs.transactions] == [0, 1]


def test_single_transaction_path_has_no_index():
    # The same convention as validate.PathNamer: an index only where the name repeats.
    (tx,) = refs_of(PACS008, pacs008()).transactions
    assert tx.path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"


def test_pacs008_transaction_agents_and_absent_optionals():
    data = pacs008(
        instg_bic=None,
        instd_bic=None,
        ctrl_sum="__omit__",
        ttl="__omit__",
        txs=[Tx(instg_agt_bic="AAAAUS33", instd_agt_bic="BBBBDEFF", uetr=None, tx_id=None)],
    )
    refs = refs_of(PACS008, data)
    assert (refs.instg_agt_bic, refs.instd_agt_bic, refs.ctrl_sum, refs.ctrl_sum_text) == (None, None, None, None)
    assert (refs.ttl_amount, refs.ttl_amount_text, refs.ttl_ccy) == (None, None, None)
    (tx,) = refs.transactions
    assert (tx.instg_agt_bic, tx.instd_agt_bic, tx.uetr, tx.tx_id) == ("AAAAUS33", "BBBBDEFF", None, None)


def test_agent_without_bicfi_is_empty_string_not_none():
    _, doc = split(pacs008())
    ns = PACS008.namespace
    bicfi = doc.find(f".//{{{ns}}}GrpHdr/{{{ns}}}InstgAgt/{{{ns}}}FinInstnId/{{{ns}}}BICFI")
    fin = bicfi.getparent()
    fin.remove(bicfi)
    mmb = etree.SubElement(fin, f"{{{ns}}}ClrSysMmbId")
    etree.SubElement(mmb, f"{{{ns}}}MmbId").text = "021000021"
    refs = extract_refs(PACS008, doc)
    assert refs.instg_agt_bic == ""
    assert refs.instd_agt_bic == "BBBBDEFFXXX"


def test_pain001_payment_infos_and_transactions():
    data = pain001(
        msg_id="P-9",
        pmt_infs=[
            PmtInf("PMT-1", make_txs(2), dbtr_agt_bic="AAAAUS33"),
            PmtInf("PMT-2", [Tx(end_to_end_id="E2E-3", instr_id="I-3", amount="7.25", ccy="USD")]),
        ],
    )
    refs = refs_of(PAIN001, data)
    assert (refs.msg_id, refs.nb_of_txs, refs.ctrl_sum) == ("P-9", "3", Decimal("207.25"))
    assert refs.ttl_amount is None
    p1, p2 = refs.payment_infos
    assert (p1.path, p1.pmt_inf_id, p1.nb_of_txs, p1.ctrl_sum, p1.tx_count) == (
        "/Document/CstmrCdtTrfInitn/PmtInf[1]",
        "PMT-1",
        "2",
        Decimal("200.00"),
        2,
    )
    assert (p1.dbtr_agt_bic, p2.dbtr_agt_bic) == ("AAAAUS33", "AAAAUS33XXX")
    t1, t2, t3 = refs.transactions
    assert [t.index for t in refs.transactions] == [0, 1, 2]
    assert t1.path == "/Document/CstmrCdtTrfInitn/PmtInf[1]/CdtTrfTxInf[1]"
    assert t3.path == "/Document/CstmrCdtTrfInitn/PmtInf[2]/CdtTrfTxInf"
    assert (t2.pmt_inf_id, t2.pmt_inf_index, t3.pmt_inf_id, t3.pmt_inf_index) == ("PMT-1", 0, "PMT-2", 1)
    assert (t3.end_to_end_id, t3.instr_id, t3.tx_id) == ("E2E-3", "I-3", None)
    assert (t3.amount, t3.currency) == (Decimal("7.25"), "USD")
    assert t3.amount_path == "/Document/CstmrCdtTrfInitn/PmtInf[2]/CdtTrfTxInf/Amt/InstdAmt"
    assert (t1.dbtr_agt_bic, t3.dbtr_agt_bic, t3.cdtr_agt_bic) == ("AAAAUS33", "AAAAUS33XXX", "BBBBDEFFXXX")


def test_searchable_refs_kinds_order_and_no_duplicates():
    data = pain001(
        pmt_infs=[
            PmtInf("PMT-1", [Tx(end_to_end_id="E-1", instr_id="I-1", uetr=None), Tx(end_to_end_id="E-1")]),
        ]
    )
    pairs = searchable_refs(refs_of(PAIN001, data))
    assert pairs == (
        ("pmt_inf_id", "PMT-1"),
        ("end_to_end_id", "E-1"),
        ("instr_id", "I-1"),
        ("uetr", stable_uetr("E-1")),
    )
    pacs = searchable_refs(refs_of(PACS008, pacs008(txs=[Tx(instr_id="I-9")])))
    assert pacs == (
        ("end_to_end_id", "E2E-1"),
        ("uetr", stable_uetr("E2E-1")),
        ("tx_id", "TX-1"),
        ("instr_id", "I-9"),
    )


def test_unreadable_numbers_become_none_but_keep_their_text():
    # Not schema-valid; refs must still not raise (reports are built from refs of invalid messages too).
    data = pacs008(nb_of_txs="x", ctrl_sum="abc", txs=[Tx(amount="1,5")], ttl="NaN")
    refs = refs_of(PACS008, data)
    assert (refs.nb_of_txs, refs.ctrl_sum, refs.ctrl_sum_text, refs.ttl_amount) == ("x", None, "abc", None)
    (tx,) = refs.transactions
    assert (tx.amount, tx.amount_text) == (None, "1,5")


def test_wrong_root_gives_empty_refs():
    doc = etree.fromstring(f'<Document xmlns="{PACS008.namespace}"><Other/></Document>'.encode())
    refs = extract_refs(PACS008, doc)
    assert (refs.msg_id, refs.transactions, refs.payment_infos) == (None, (), ())


def test_comments_and_processing_instructions_are_skipped():
    data = pacs008().replace(b"<MsgId>", b"<!-- c --><?pi x?><MsgId>")
    assert refs_of(PACS008, data).msg_id == "MSG-1"


def test_other_messages_get_group_fields_only():
    other = MessageDef(id="pacs.008.001.08", root="FIToFICstmrCdtTrf", role="payment", report=None)
    odd = MessageDef(id="pacs.010.001.03", root="FIDrctDbt", role="payment", report=None)
    doc = etree.fromstring(
        f'<Document xmlns="{odd.namespace}"><FIDrctDbt><GrpHdr><MsgId>F-1</MsgId>'
        f"<NbOfTxs>1</NbOfTxs></GrpHdr><CdtInstr/></FIDrctDbt></Document>".encode()
    )
    refs = extract_refs(odd, doc)
    assert (refs.msg_id, refs.nb_of_txs, refs.transactions) == ("F-1", "1", ())
    assert extract_refs(other, split(pacs008())[1]).msg_id == "MSG-1"


def test_pacs002_refs_carry_the_original_ids():
    original_data = pacs008(msg_id="ORIG-1", txs=make_txs(2))
    original = refs_of(PACS008, original_data)
    finding = Finding("AC03", "bad", path=original.transactions[1].path + "/CdtrAcct/Id/IBAN")
    report = build_status_report(
        report_def=PACS002,
        original_def=PACS008,
        original=original,
        original_msg_id=None,
        findings=[finding],
        report_msg_id="RPT-1",
        created_at=NOW,
        instructing_bic="SWCHGB2L",
        instructed_bic="AAAAUS33XXX",
    )
    refs = extract_refs(PACS002, etree.fromstring(report))
    assert (refs.msg_id, refs.original_msg_id, refs.original_msg_nm_id, refs.group_status) == (
        "RPT-1",
        "ORIG-1",
        "pacs.008.001.08",
        "RJCT",
    )
    assert (refs.instg_agt_bic, refs.instd_agt_bic) == ("SWCHGB2L", "AAAAUS33XXX")
    (tx,) = refs.transactions
    assert (tx.end_to_end_id, tx.tx_id, tx.uetr, tx.status) == ("E2E-2", "TX-2", stable_uetr("E2E-2"), "RJCT")
    assert tx.path == "/Document/FIToFIPmtStsRpt/TxInfAndSts"
    assert ("end_to_end_id", "E2E-2") in searchable_refs(refs)


def test_pain002_refs_carry_payment_infos():
    original = refs_of(PAIN001, pain001(pmt_infs=[PmtInf("PMT-1"), PmtInf("PMT-2", [Tx(end_to_end_id="E-9")])]))
    finding = Finding("AC03", "bad", path=original.transactions[1].path + "/CdtrAcct/Id/IBAN")
    report = build_status_report(
        report_def=PAIN002,
        original_def=PAIN001,
        original=original,
        original_msg_id=None,
        findings=[finding],
        report_msg_id="RPT-2",
        created_at=NOW,
    )
    refs = extract_refs(PAIN002, etree.fromstring(report))
    (pi,) = refs.payment_infos
    assert (pi.pmt_inf_id, pi.path, pi.tx_count) == ("PMT-2", "/Document/CstmrPmtStsRpt/OrgnlPmtInfAndSts", 1)
    (tx,) = refs.transactions
    assert (tx.end_to_end_id, tx.pmt_inf_id, tx.pmt_inf_index, tx.status) == ("E-9", "PMT-2", 0, "RJCT")
    assert tx.path == "/Document/CstmrPmtStsRpt/OrgnlPmtInfAndSts/TxInfAndSts"


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "samples").glob("*.xml")), ids=str)
def test_every_sample_yields_refs(path: Path):
    _hdr, doc = split(path.read_bytes())
    defn = def_of(doc)
    refs = extract_refs(defn, doc)
    assert refs.msg_id and refs.transactions
    assert all(t.end_to_end_id for t in refs.transactions)


def test_refs_are_immutable():
    refs = refs_of(PACS008, pacs008())
    with pytest.raises(AttributeError):
        refs.msg_id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        refs.transactions[0].amount = None  # type: ignore[misc]


def test_agent_bic_found_off_the_usual_position():
    # BICFI is read by index where the XSD puts it; a comment or another order still finds it.
    _, doc = split(pacs008())
    ns = PACS008.namespace
    grp_agent = doc.find(f".//{{{ns}}}GrpHdr/{{{ns}}}InstgAgt")
    grp_agent.insert(0, etree.Comment("first"))
    fin = doc.find(f".//{{{ns}}}GrpHdr/{{{ns}}}InstdAgt/{{{ns}}}FinInstnId")
    etree.SubElement(fin, f"{{{ns}}}LEI").text = "529900T8BM49AURSDO55"
    fin.insert(0, fin[-1])  # LEI before BICFI
    empty = doc.find(f".//{{{ns}}}CdtTrfTxInf/{{{ns}}}DbtrAgt/{{{ns}}}FinInstnId")
    for child in list(empty):
        empty.remove(child)
    refs = extract_refs(PACS008, doc)
    assert (refs.instg_agt_bic, refs.instd_agt_bic) == ("AAAAUS33XXX", "BBBBDEFFXXX")
    assert refs.transactions[0].dbtr_agt_bic == ""


def _set_member_id(agent: etree._Element, ns: str, mmb_id: str, *, keep_bic: bool, clr_sys: str | None = None) -> None:
    """Give `agent` a FinInstnId/ClrSysMmbId (after BICFI, where the XSD puts it), optionally dropping the BICFI."""
    fin = agent.find(f"{{{ns}}}FinInstnId")
    bicfi = fin.find(f"{{{ns}}}BICFI")
    mmb = etree.Element(f"{{{ns}}}ClrSysMmbId")
    if clr_sys is not None:
        etree.SubElement(etree.SubElement(mmb, f"{{{ns}}}ClrSysId"), f"{{{ns}}}Cd").text = clr_sys
    etree.SubElement(mmb, f"{{{ns}}}MmbId").text = mmb_id
    if keep_bic and bicfi is not None:
        bicfi.addnext(mmb)
    else:
        if bicfi is not None:
            fin.remove(bicfi)
        fin.insert(0, mmb)


def test_pacs008_member_ids_of_instructed_and_creditor_agents():
    data = pacs008(txs=[Tx(instd_agt_bic="BBBBDEFF"), Tx(end_to_end_id="E2E-2", tx_id="TX-2")])
    _, doc = split(data)
    ns = PACS008.namespace
    tx1, _ = doc.iter(f"{{{ns}}}CdtTrfTxInf")
    _set_member_id(tx1.find(f"{{{ns}}}InstdAgt"), ns, "DE-70040041", keep_bic=True, clr_sys="DEBLZ")
    _set_member_id(tx1.find(f"{{{ns}}}CdtrAgt"), ns, "021000021", keep_bic=False, clr_sys="USABA")
    _set_member_id(doc.find(f".//{{{ns}}}GrpHdr/{{{ns}}}InstdAgt"), ns, " 12345678 ", keep_bic=True)
    refs = extract_refs(PACS008, doc)
    assert refs.instd_agt_mmb_id == "12345678"  # stripped, as every id
    assert refs.instd_agt_bic == "BBBBDEFFXXX"
    first, second = refs.transactions
    assert (first.instd_agt_bic, first.instd_agt_mmb_id) == ("BBBBDEFF", "DE-70040041")
    # A creditor agent known by its member id only: the BIC is "" (present, no BICFI), the member id is there.
    assert (first.cdtr_agt_bic, first.cdtr_agt_mmb_id) == ("", "021000021")
    # Transaction-level fields only: the second transaction has no InstdAgt of its own and no member ids.
    assert (second.instd_agt_bic, second.instd_agt_mmb_id) == (None, None)
    assert (second.cdtr_agt_bic, second.cdtr_agt_mmb_id) == ("BBBBDEFFXXX", None)


def test_member_ids_are_none_without_agent_or_member_id():
    refs = refs_of(PACS008, pacs008(instd_bic=None))
    assert refs.instd_agt_mmb_id is None
    (tx,) = refs.transactions
    assert (tx.instd_agt_mmb_id, tx.cdtr_agt_mmb_id) == (None, None)
    _, doc = split(pacs008())
    ns = PACS008.namespace
    # A ClrSysMmbId whose MmbId is missing (schema-invalid) reads as None, never raises.
    _set_member_id(doc.find(f".//{{{ns}}}CdtrAgt"), ns, "x", keep_bic=True)
    mmb = doc.find(f".//{{{ns}}}CdtrAgt/{{{ns}}}FinInstnId/{{{ns}}}ClrSysMmbId")
    mmb.remove(mmb[0])
    assert extract_refs(PACS008, doc).transactions[0].cdtr_agt_mmb_id is None


def test_pain001_creditor_agent_member_id():
    _, doc = split(pain001(pmt_infs=[PmtInf("PMT-1", make_txs(2))]))
    ns = PAIN001.namespace
    cdtr_agents = list(doc.iter(f"{{{ns}}}CdtrAgt"))
    _set_member_id(cdtr_agents[1], ns, "400515", keep_bic=True, clr_sys="GBDSC")
    t1, t2 = extract_refs(PAIN001, doc).transactions
    assert (t1.cdtr_agt_mmb_id, t2.cdtr_agt_mmb_id) == (None, "400515")
    assert (t2.cdtr_agt_bic, t2.instd_agt_mmb_id) == ("BBBBDEFFXXX", None)


def test_member_id_placement_is_schema_valid():
    # The doctored message stays valid against the project schema: member ids sit where ISO puts them, so the
    # tests above read the real layout, not one made up for them.
    _, doc = split(pacs008(txs=[Tx(instd_agt_bic="BBBBDEFF")]))
    ns = PACS008.namespace
    tx = doc.find(f".//{{{ns}}}CdtTrfTxInf")
    _set_member_id(tx.find(f"{{{ns}}}InstdAgt"), ns, "DE-70040041", keep_bic=True, clr_sys="DEBLZ")
    _set_member_id(tx.find(f"{{{ns}}}CdtrAgt"), ns, "021000021", keep_bic=False, clr_sys="USABA")
    schema = project_schema("pacs.008.001.08")
    assert schema.validate(doc), schema.error_log


# -- issue 4: the other message types -----------------------------------------------------------------------------


def _refs(message_id: str, data: bytes):
    return refs_of(message_def(message_id), data)


@pytest.mark.parametrize("message_id", ["pacs.009.001.08", "pacs.009.001.09"])
def test_pacs009_reads_like_pacs008(message_id):
    txs = [msgs.FiTx(), msgs.FiTx(end_to_end_id="E2E-2", tx_id="TX-2", amount="0.5", instd_agt_bic="CCCCGB2L")]
    refs = _refs(message_id, msgs.pacs009(message_id, msg_id="FI-9", txs=txs, ctrl_sum=None, instd_bic=None))
    assert (refs.msg_id, refs.nb_of_txs, refs.ctrl_sum, refs.ttl_amount) == (
        "FI-9",
        "2",
        Decimal("1000.50"),
        Decimal("1000.50"),
    )
    assert (refs.instg_agt_bic, refs.instd_agt_bic) == ("AAAAUS33XXX", None)
    first, second = refs.transactions
    assert second.path == "/Document/FICdtTrf/CdtTrfTxInf[2]"
    assert (second.end_to_end_id, second.tx_id, second.amount, second.instd_agt_bic) == (
        "E2E-2",
        "TX-2",
        Decimal("0.5"),
        "CCCCGB2L",
    )
    assert first.uetr == stable_uetr("E2E-1")


@pytest.mark.parametrize("message_id", ["pacs.004.001.09", "pacs.004.001.10"])
def test_pacs004_returned_amounts_and_originals(message_id):
    txs = [msgs.Orig(), msgs.Orig(end_to_end_id="E2E-2", tx_id=None, msg_id="ORIG-2", amount="7.25")]
    refs = _refs(message_id, msgs.pacs004(message_id, original_msg_id="ORIG-1", txs=txs, ctrl_sum=None))
    assert (refs.msg_id, refs.original_msg_id, refs.original_msg_nm_id) == ("RTR-1", "ORIG-1", "pacs.008.001.08")
    assert (refs.ttl_amount, refs.ttl_ccy, refs.ctrl_sum, refs.nb_of_txs) == (
        Decimal("107.25"),
        "EUR",
        Decimal("107.25"),
        "2",
    )
    assert (refs.instg_agt_bic, refs.instd_agt_bic) == ("BBBBDEFFXXX", "AAAAUS33XXX")
    first, second = refs.transactions
    assert (first.own_id, first.original_msg_id, first.original_end_to_end_id, first.original_tx_id) == (
        "RTR-TX-1",
        "ORIG-1",  # no OrgnlGrpInf of its own: the message's
        "E2E-1",
        "TX-1",
    )
    assert first.original_uetr == stable_uetr("E2E-1") == first.uetr
    assert (second.original_msg_id, second.original_end_to_end_id, second.original_tx_id) == ("ORIG-2", "E2E-2", None)
    assert (second.amount, second.amount_path) == (Decimal("7.25"), "/Document/PmtRtr/TxInf[2]/RtrdIntrBkSttlmAmt")
    # Searchable under the original payment's ids, so `switchctl show E2E-2` finds the payment and its return.
    assert ("end_to_end_id", "E2E-2") in searchable_refs(refs)


@pytest.mark.parametrize("message_id", ["pacs.028.001.03", "pacs.028.001.04"])
def test_pacs028_status_request_originals(message_id):
    refs = _refs(message_id, msgs.pacs028(message_id, original_msg_id=None, txs=[msgs.Orig(msg_id="ORIG-5")]))
    # No group-level OrgnlGrpInf: the message's original is its first transaction's.
    assert (refs.msg_id, refs.original_msg_id) == ("REQ-1", "ORIG-5")
    (tx,) = refs.transactions
    assert (tx.own_id, tx.original_msg_id, tx.original_end_to_end_id, tx.amount) == (
        "REQ-TX-1",
        "ORIG-5",
        "E2E-1",
        None,
    )
    assert (refs.instg_agt_bic, refs.instd_agt_bic) == ("AAAAUS33XXX", "BBBBDEFFXXX")


@pytest.mark.parametrize("message_id", ["camt.056.001.08", "camt.056.001.09"])
def test_camt056_assignment_underlyings_and_originals(message_id):
    data = msgs.camt056(
        message_id,
        underlying=[
            msgs.Underlying("ORIG-1", [msgs.Orig(), msgs.Orig(end_to_end_id="E2E-2", uetr=None)]),
            msgs.Underlying(
                None, [msgs.Orig(end_to_end_id=None, tx_id=None, msg_id="ORIG-3", msg_nm_id="pacs.009.001.08")]
            ),
        ],
        ctrl_sum=None,
    )
    refs = _refs(message_id, data)
    assert (refs.msg_id, refs.cre_dt_tm, refs.nb_of_txs, refs.ctrl_sum) == (
        "CXL-1",
        "2026-11-23T10:00:00Z",
        "3",
        Decimal("300.00"),
    )
    assert (refs.instg_agt_bic, refs.instd_agt_bic) == ("AAAAUS33XXX", "BBBBDEFFXXX")  # assigner, assignee
    assert refs.original_msg_id == "ORIG-1"
    t1, t2, t3 = refs.transactions
    assert [t.path for t in refs.transactions] == [
        "/Document/FIToFIPmtCxlReq/Undrlyg[1]/TxInf[1]",
        "/Document/FIToFIPmtCxlReq/Undrlyg[1]/TxInf[2]",
        "/Document/FIToFIPmtCxlReq/Undrlyg[2]/TxInf",
    ]
    assert (t1.own_id, t1.original_msg_id, t1.original_end_to_end_id, t1.original_uetr) == (
        "CXL-TX-1",
        "ORIG-1",
        "E2E-1",
        stable_uetr("E2E-1"),
    )
    assert (t2.original_end_to_end_id, t2.original_uetr) == ("E2E-2", None)
    assert (t3.original_msg_id, t3.original_msg_nm_id, t3.original_end_to_end_id) == ("ORIG-3", "pacs.009.001.08", None)
    assert t1.amount_path == "/Document/FIToFIPmtCxlReq/Undrlyg[1]/TxInf[1]/OrgnlIntrBkSttlmAmt"


def test_camt056_assigner_that_is_a_party_has_no_bic():
    refs = _refs("camt.056.001.08", msgs.camt056(assigner_bic=None, nb_of_txs=OMIT))
    assert (refs.instg_agt_bic, refs.nb_of_txs) == ("", None)


@pytest.mark.parametrize("message_id", ["camt.029.001.09", "camt.029.001.10"])
def test_camt029_resolution_originals_and_status(message_id):
    data = msgs.camt029(message_id, details=[msgs.Underlying("CXL-1", [msgs.Orig(), msgs.Orig(end_to_end_id="E2E-2")])])
    refs = _refs(message_id, data)
    assert (refs.msg_id, refs.original_msg_id, refs.instg_agt_bic, refs.instd_agt_bic) == (
        "RSL-1",
        "CXL-1",
        "BBBBDEFFXXX",
        "AAAAUS33XXX",
    )
    t1, t2 = refs.transactions
    assert (t1.own_id, t1.status, t1.original_end_to_end_id, t2.original_msg_id) == (
        "RSL-TX-1",
        "ACCR",
        "E2E-1",
        "CXL-1",
    )
    assert t2.path == "/Document/RsltnOfInvstgtn/CxlDtls/TxInfAndSts[2]"


@pytest.mark.parametrize("message_id", ["pain.008.001.08", "pain.008.001.09"])
def test_pain008_payment_infos_mandates_and_agents(message_id):
    data = msgs.pain008(
        message_id,
        pmt_infs=[
            msgs.DdPmtInf("PMT-1", [msgs.DdTx(), msgs.DdTx(end_to_end_id="E2E-2", mandate_id=None, amount="0.99")]),
            msgs.DdPmtInf("PMT-2", [msgs.DdTx(end_to_end_id="E2E-3")], creditor_agent_bic="CCCCFRPP"),
        ],
    )
    refs = _refs(message_id, data)
    assert (refs.msg_id, refs.nb_of_txs, refs.ctrl_sum) == ("DD-1", "3", Decimal("100.99"))
    p1, p2 = refs.payment_infos
    assert (p1.pmt_inf_id, p1.cdtr_agt_bic, p1.dbtr_agt_bic, p1.ctrl_sum, p1.tx_count) == (
        "PMT-1",
        "AAAAGB2LXXX",
        None,
        Decimal("50.99"),
        2,
    )
    assert p2.cdtr_agt_bic == "CCCCFRPP"
    t1, t2, t3 = refs.transactions
    assert (t1.mandate_id, t2.mandate_id, t3.mandate_id) == ("MNDT-1", None, "MNDT-1")
    assert (t1.dbtr_agt_bic, t1.cdtr_agt_bic, t3.cdtr_agt_bic, t3.pmt_inf_index) == (
        "BBBBDEFFXXX",
        "AAAAGB2LXXX",
        "CCCCFRPP",
        1,
    )
    assert (t2.amount, t2.amount_path) == (
        Decimal("0.99"),
        "/Document/CstmrDrctDbtInitn/PmtInf[1]/DrctDbtTxInf[2]/InstdAmt",
    )


def test_pacs002_transactions_carry_their_originals():
    original = refs_of(PACS008, pacs008(msg_id="ORIG-1", txs=make_txs(2)))
    finding = Finding("AC03", "bad", path=original.transactions[0].path + "/CdtrAcct/Id/IBAN")
    report = build_status_report(
        report_def=PACS002,
        original_def=PACS008,
        original=original,
        original_msg_id=None,
        findings=[finding],
        report_msg_id="RPT-1",
        created_at=NOW,
    )
    (tx,) = extract_refs(PACS002, etree.fromstring(report)).transactions
    assert (tx.original_msg_id, tx.original_msg_nm_id, tx.original_end_to_end_id, tx.original_tx_id) == (
        "ORIG-1",
        "pacs.008.001.08",
        "E2E-1",
        "TX-1",
    )
    assert tx.original_uetr == stable_uetr("E2E-1")


@pytest.mark.parametrize(
    ("message_id", "build"),
    [
        ("pacs.009.001.08", msgs.pacs009),
        ("pacs.004.001.10", msgs.pacs004),
        ("pacs.028.001.04", msgs.pacs028),
        ("camt.056.001.09", msgs.camt056),
        ("camt.029.001.10", msgs.camt029),
        ("pain.008.001.09", msgs.pain008),
    ],
)
def test_builders_make_schema_valid_messages(message_id, build):
    # The refs above are read from messages laid out as the official schema demands.
    schema = project_schema(message_id)
    assert schema.validate(etree.fromstring(build(message_id))), schema.error_log
