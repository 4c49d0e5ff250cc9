"""Business rules: one builder-made bad message per rule, exact reason codes and paths; valid messages pass."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree
from schwifty import IBAN

from switchd.errors import Finding
from switchd.iso.refs import extract_refs
from switchd.iso.rules import (
    IBAN_SPECS,
    amount_problem,
    bic_problem,
    check_rules,
    check_sender_authority,
    element_path,
    iban_problem,
    uetr_problem,
)
from tests.builders import (
    OMIT,
    SAMPLES,
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
)
from tests.iso import messages as msgs

CATALOGUE = catalogue()
PACS008 = message_def("pacs.008.001.08")
PAIN001 = message_def("pain.001.001.09")
PACS = "/Document/FIToFICstmrCdtTrf"
PAIN = "/Document/CstmrCdtTrfInitn"


def rules(data: bytes) -> list[Finding]:
    hdr, doc = split(data)
    defn = def_of(doc)
    return check_rules(defn, doc, extract_refs(defn, doc), hdr)


def found(data: bytes) -> list[tuple[str, str | None, str | None]]:
    return [(f.code, f.path, f.tx_ref) for f in rules(data)]


def authority(data: bytes, owned: set[str]) -> list[tuple[str, str | None, str | None]]:
    hdr, doc = split(data)
    defn = def_of(doc)
    refs = extract_refs(defn, doc)
    return [(f.code, f.path, f.tx_ref) for f in check_sender_authority(defn, doc, refs, hdr, frozenset(owned))]


# -- valid messages and the sample files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pacs008(),
        pacs008(app_hdr=False),
        pacs008(txs=make_txs(5)),
        pacs008(instg_bic=None, instd_bic=None, txs=[Tx(instg_agt_bic="AAAAUS33", instd_agt_bic="BBBBDEFF")]),
        pacs008(ctrl_sum=OMIT, ttl=OMIT, txs=[Tx(uetr=None, tx_id=None)]),
        pacs008(txs=[Tx(ccy="JPY", amount="1500")]),
        pacs008(txs=[Tx(ccy="BHD", amount="1.125")]),
        pain001(),
        pain001(app_hdr=True),
        pain001(pmt_infs=[PmtInf("P-1", make_txs(3)), PmtInf("P-2", [Tx(ccy="USD", amount="5")])]),
        pain001(pmt_infs=[PmtInf(nb_of_txs=OMIT, ctrl_sum=OMIT)], ctrl_sum=OMIT),
    ],
    ids=lambda d: str(len(d)),
)
def test_valid_messages_have_no_findings(data: bytes):
    assert rules(data) == []


SAMPLE_FILES = sorted(SAMPLES.glob("*.xml"))


def test_samples_exist():
    assert len(SAMPLE_FILES) >= 15


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_is_schema_valid_and_yields_exactly_its_code(path: Path):
    data = path.read_bytes()
    hdr, doc = split(data)
    message_id, _, rest = path.name.partition("-")
    schema = project_schema(message_id)
    assert schema.validate(doc), schema.error_log
    if hdr is not None:
        head = project_schema("head.001.001.02")
        assert head.validate(hdr), head.error_log
    codes = {f.code for f in rules(data)}
    expected = rest.split("-")[0]
    assert codes == (set() if expected in ("valid.xml", "bare.xml") else {expected})


# -- counts and sums ----------------------------------------------------------------------------------------------


def test_am19_group_number_of_transactions():
    assert found(pacs008(txs=make_txs(2), nb_of_txs="3")) == [("AM19", f"{PACS}/GrpHdr/NbOfTxs", None)]
    assert found(pain001(txs=make_txs(2), nb_of_txs="1")) == [("AM19", f"{PAIN}/GrpHdr/NbOfTxs", None)]
    (f,) = rules(pacs008(nb_of_txs="7"))
    assert f.detail == "GrpHdr/NbOfTxs says 7, the message holds 1"


def test_nb_of_txs_compares_numbers_not_text():
    assert rules(pacs008(txs=make_txs(2), nb_of_txs="02")) == []


def test_am20_payment_info_number_of_transactions():
    data = pain001(pmt_infs=[PmtInf("P-1", make_txs(2)), PmtInf("P-2", make_txs(1), nb_of_txs="4")])
    assert found(data) == [("AM20", f"{PAIN}/PmtInf[2]/NbOfTxs", None)]


def test_am16_group_control_sum():
    assert found(pacs008(txs=make_txs(2), ctrl_sum="200.01")) == [("AM16", f"{PACS}/GrpHdr/CtrlSum", None)]
    assert found(pain001(txs=make_txs(2), ctrl_sum="1")) == [("AM16", f"{PAIN}/GrpHdr/CtrlSum", None)]


def test_control_sums_compare_values():
    assert rules(pacs008(txs=make_txs(2), ctrl_sum="200", ttl="200.0")) == []


def test_control_sum_adds_across_currencies():
    # ISO: CtrlSum is the total of all individual amounts "irrespective of currencies".
    txs = [Tx(end_to_end_id="A", amount="10"), Tx(end_to_end_id="B", amount="5", ccy="USD")]
    assert rules(pain001(txs=txs, ctrl_sum="15")) == []


def test_am17_payment_info_control_sum():
    data = pain001(pmt_infs=[PmtInf("P-1", make_txs(2), ctrl_sum="199.99"), PmtInf("P-2", make_txs(1))])
    assert found(data) == [("AM17", f"{PAIN}/PmtInf[1]/CtrlSum", None)]


def test_am10_total_interbank_settlement_amount():
    (f,) = rules(pacs008(txs=make_txs(2), ttl="250.00"))
    assert (f.code, f.path) == ("AM10", f"{PACS}/GrpHdr/TtlIntrBkSttlmAmt")
    assert f.detail == "TtlIntrBkSttlmAmt says 250.00, IntrBkSttlmAmt sum to 200.00"


def test_curr_transaction_currency_differs_from_total():
    txs = [Tx(end_to_end_id="A"), Tx(end_to_end_id="B", ccy="USD"), Tx(end_to_end_id="C")]
    # The total is wrong as well, but a sum across currencies is meaningless: only CURR is reported.
    assert found(pacs008(txs=txs, ttl="1.00", ctrl_sum=OMIT)) == [
        ("CURR", f"{PACS}/CdtTrfTxInf[2]/IntrBkSttlmAmt", "B"),
    ]


# -- amounts and currencies ---------------------------------------------------------------------------------------


def test_am11_unknown_currency():
    assert found(pacs008(txs=[Tx(ccy="XYZ")], ttl=OMIT)) == [("AM11", f"{PACS}/CdtTrfTxInf/IntrBkSttlmAmt", "E2E-1")]
    # The group total is checked too.
    codes = found(pacs008(txs=[Tx(ccy="XYZ")]))
    assert ("AM11", f"{PACS}/GrpHdr/TtlIntrBkSttlmAmt", None) in codes


def test_am11_currency_without_minor_unit():
    (f,) = rules(pain001(txs=[Tx(ccy="XAU", amount="1")]))
    assert (f.code, f.path, f.tx_ref) == ("AM11", f"{PAIN}/PmtInf/CdtTrfTxInf/Amt/InstdAmt", "E2E-1")


def test_ch20_more_decimals_than_the_currency_allows():
    assert found(pacs008(txs=[Tx(ccy="JPY", amount="100.5")], ttl=OMIT)) == [
        ("CH20", f"{PACS}/CdtTrfTxInf/IntrBkSttlmAmt", "E2E-1")
    ]
    (f,) = rules(pain001(txs=[Tx(amount="10.001")]))
    assert (f.code, f.detail) == ("CH20", "10.001 EUR has 3 decimals; EUR allows 2")


@pytest.mark.parametrize(
    ("amount", "ccy", "code"),
    [
        ("100", "JPY", None),
        ("100.0", "JPY", None),  # by value, like XSD fractionDigits
        ("100.10", "EUR", None),
        ("100.100", "EUR", None),
        ("100.101", "EUR", "CH20"),
        ("0.001", "KWD", None),
        ("0.0001", "KWD", "CH20"),
        ("1.2345", "CLF", None),
        ("1", "DEM", "AM11"),  # withdrawn: not in ISO 4217 any more
        ("1", "XXX", "AM11"),
    ],
)
def test_amount_problem(amount: str, ccy: str, code: str | None):
    from decimal import Decimal

    problem = amount_problem(Decimal(amount), ccy)
    assert (problem[0] if problem else None) == code


# -- BICs ---------------------------------------------------------------------------------------------------------


def test_rc01_bic_with_unknown_country():
    data = pacs008(txs=[*make_txs(2)[:1], Tx(end_to_end_id="E2E-2", tx_id="TX-2", cdtr_agt_bic="BBBBZZFFXXX")])
    assert found(data) == [("RC01", f"{PACS}/CdtTrfTxInf[2]/CdtrAgt/FinInstnId/BICFI", "E2E-2")]


def test_rc01_group_agent_and_app_hdr():
    data = pacs008(instd_bic="BBBBQQFF", hdr_to="BBBBDEFF", hdr_fr="AAAAZZ33")
    assert found(data) == [
        ("RC01", "/AppHdr/Fr/FIId/FinInstnId/BICFI", None),
        ("RC01", f"{PACS}/GrpHdr/InstdAgt/FinInstnId/BICFI", None),
    ]


def test_rc01_pain_debtor_agent():
    data = pain001(pmt_infs=[PmtInf(dbtr_agt_bic="AAAAAA33")])
    assert found(data) == [("RC01", f"{PAIN}/PmtInf/DbtrAgt/FinInstnId/BICFI", None)]


@pytest.mark.parametrize(
    ("bic", "ok"),
    [
        ("AAAAUS33", True),
        ("AAAAUS33XXX", True),
        ("1AB2DEFF", True),  # ISO 9362:2014: the party prefix may hold digits
        ("AAAAXK22", True),  # Kosovo: user-assigned XK, used by SWIFT
        ("AAAAUS3", False),
        ("AAAAUS33XX", False),
        ("AAAA1S33", False),
        ("aaaaus33", False),
        ("AAAAZZ33", False),
        ("AAAAUS33-XX", False),
    ],
)
def test_bic_problem(bic: str, ok: bool):
    assert (bic_problem(bic) is None) == ok


# -- IBANs --------------------------------------------------------------------------------------------------------


def test_ac02_debtor_and_ac03_creditor_iban():
    data = pacs008(
        txs=[
            Tx(end_to_end_id="A", debtor_iban="DE89370400440532013001"),
            Tx(end_to_end_id="B", creditor_iban="GB29NWBK6016133192681"),
        ],
    )
    assert found(data) == [
        ("AC02", f"{PACS}/CdtTrfTxInf[1]/DbtrAcct/Id/IBAN", "A"),
        ("AC03", f"{PACS}/CdtTrfTxInf[2]/CdtrAcct/Id/IBAN", "B"),
    ]
    details = [f.detail for f in rules(data)]
    assert details[0].endswith("has check digits 89, expected 62")  # schwifty: DE62370400440532013001
    assert details[1].endswith("has 21 characters; GB IBANs have 22")


def test_ac02_pain_debtor_account_on_payment_info():
    data = pain001(pmt_infs=[PmtInf(debtor_iban="FR7630006000011234567890188")])
    assert found(data) == [("AC02", f"{PAIN}/PmtInf/DbtrAcct/Id/IBAN", None)]


def test_ac01_any_other_account():
    hdr, doc = split(pacs008())
    ns = PACS008.namespace
    dbtr_agt = doc.find(f".//{{{ns}}}DbtrAgt")
    acct = etree.Element(f"{{{ns}}}DbtrAgtAcct")
    etree.SubElement(etree.SubElement(acct, f"{{{ns}}}Id"), f"{{{ns}}}IBAN").text = "XX00123"
    dbtr_agt.addnext(acct)
    schema = project_schema(PACS008.id)
    assert schema.validate(doc), schema.error_log
    refs = extract_refs(PACS008, doc)
    (f,) = check_rules(PACS008, doc, refs, hdr)
    assert (f.code, f.path, f.tx_ref) == ("AC01", f"{PACS}/CdtTrfTxInf/DbtrAgtAcct/Id/IBAN", "E2E-1")
    assert "country 'XX' has no IBAN format" in f.detail


def test_iban_problem_agrees_with_schwifty():
    # schwifty is the reference (its registry is our data); ours is ~7x cheaper on the hot path.
    checked = 0
    for country in sorted(IBAN_SPECS):
        try:
            good = str(IBAN.random(country_code=country))
        except Exception:  # schwifty cannot make up every country's BBAN: skip those
            continue
        checked += 1
        assert iban_problem(good) is None, good
        digits = int(good[2:4])
        bad = good[:2] + f"{(digits % 97) + 1:02d}"[:2] + good[4:] if digits != 98 else good[:2] + "02" + good[4:]
        assert iban_problem(bad) is not None, bad
        assert not IBAN(bad, allow_invalid=True).is_valid
        assert iban_problem(good[:-1]) is not None
    assert checked > 50


@pytest.mark.parametrize(
    ("iban", "ok"),
    [
        ("DE89370400440532013000", True),
        ("de89370400440532013000", True),  # case-insensitive, like schwifty
        ("GB29NWBK60161331926819", True),
        ("GB29NWBK6016133192681X", False),  # BBAN format: GB account number is digits
        ("DE01370400440532013000", False),  # 01 is a mod-97 alias no real IBAN carries
        ("US12345678901234", False),
        ("DE8937040044053201300", False),
    ],
)
def test_iban_problem(iban: str, ok: bool):
    assert (iban_problem(iban) is None) == ok


# -- UETR, agents at two levels, AppHdr ---------------------------------------------------------------------------


def test_ch16_uetr_not_uuid_v4():
    # The official XSD pattern already refuses this; the rule keeps it out if a schema is ever looser.
    data = pacs008(txs=[Tx(uetr="6ba7b810-9dad-11d1-80b4-00c04fd430c8")])  # a version 1 UUID
    assert found(data) == [("CH16", f"{PACS}/CdtTrfTxInf/PmtId/UETR", "E2E-1")]


@pytest.mark.parametrize(
    ("uetr", "ok"),
    [
        ("bed2a53e-4c3f-4388-a678-0ac4af996ac3", True),
        ("BED2A53E-4C3F-4388-A678-0AC4AF996AC3", True),
        ("bed2a53e-4c3f-5388-a678-0ac4af996ac3", False),
        ("bed2a53e-4c3f-4388-c678-0ac4af996ac3", False),
        ("bed2a53e4c3f4388a6780ac4af996ac3", False),
    ],
)
def test_uetr_problem(uetr: str, ok: bool):
    assert (uetr_problem(uetr) is None) == ok


def test_ch17_instructing_and_instructed_agent_at_both_levels():
    txs = [
        Tx(end_to_end_id="A", instg_agt_bic="AAAAUS33XXX"),
        Tx(end_to_end_id="B"),
        Tx(end_to_end_id="C", instd_agt_bic="BBBBDEFFXXX"),
    ]
    assert found(pacs008(txs=txs)) == [
        ("CH17", f"{PACS}/CdtTrfTxInf[1]/InstgAgt", "A"),
        ("CH17", f"{PACS}/CdtTrfTxInf[3]/InstdAgt", "C"),
    ]


def test_ff01_app_hdr_disagrees_with_document():
    assert found(pacs008(msg_def_idr="pacs.008.001.09")) == [("FF01", "/AppHdr/MsgDefIdr", None)]
    assert found(pacs008(biz_msg_idr="NOT-MSG-1")) == [("FF01", "/AppHdr/BizMsgIdr", None)]
    assert found(pain001(app_hdr=True, msg_def_idr="pacs.008.001.08")) == [("FF01", "/AppHdr/MsgDefIdr", None)]


def test_every_finding_is_reported_not_only_the_first():
    txs = [
        Tx(end_to_end_id="A", ccy="JPY", amount="1.5"),
        Tx(end_to_end_id="B", creditor_iban="GB00NWBK60161331926819", cdtr_agt_bic="BBBBZZFF"),
    ]
    data = pacs008(txs=txs, nb_of_txs="9", biz_msg_idr="X", ctrl_sum="0", ttl=OMIT)
    assert found(data) == [
        ("FF01", "/AppHdr/BizMsgIdr", None),
        ("AM19", f"{PACS}/GrpHdr/NbOfTxs", None),
        ("AM16", f"{PACS}/GrpHdr/CtrlSum", None),
        ("CH20", f"{PACS}/CdtTrfTxInf[1]/IntrBkSttlmAmt", "A"),
        ("RC01", f"{PACS}/CdtTrfTxInf[2]/CdtrAgt/FinInstnId/BICFI", "B"),
        ("AC03", f"{PACS}/CdtTrfTxInf[2]/CdtrAcct/Id/IBAN", "B"),
    ]


def test_rules_do_not_modify_the_tree():
    hdr, doc = split(pacs008(nb_of_txs="5"))
    before = etree.tostring(doc)
    check_rules(PACS008, doc, extract_refs(PACS008, doc), hdr)
    assert etree.tostring(doc) == before


def test_status_report_input_is_tolerated():
    from datetime import UTC, datetime

    from switchd.iso.reports import build_status_report

    report_def = message_def("pacs.002.001.10")
    data = build_status_report(
        report_def=report_def,
        original_def=PACS008,
        original=None,
        original_msg_id="M",
        findings=[],
        report_msg_id="R",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        group_status="ACCP",
        instructing_bic="AAAAUS33",
    )
    doc = etree.fromstring(data)
    assert check_rules(report_def, doc, extract_refs(report_def, doc), None) == []


def test_element_path_indexes_only_repeated_names():
    hdr, doc = split(pacs008(txs=make_txs(2)))
    ns = PACS008.namespace
    ibans = list(doc.iter(f"{{{ns}}}IBAN"))
    assert element_path(ibans[3]) == f"{PACS}/CdtTrfTxInf[2]/CdtrAcct/Id/IBAN"
    assert hdr is not None
    assert element_path(hdr[0][0][0][0]) == "/AppHdr/Fr/FIId/FinInstnId/BICFI"
    assert element_path(doc) == "/Document"


# -- sender authority ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "owned",
    [{"AAAAUS33"}, {"AAAAUS33XXX"}, {"aaaaus33xxx"}, {"ZZZZDEFF", "AAAAUS33"}],
)
def test_owner_of_head_office_bic_may_send(owned: set[str]):
    data = pacs008(instg_bic="AAAAUS33XXX", txs=[Tx(dbtr_agt_bic="CCCCFRPP")])
    assert authority(data, owned) == []
    # ...and for its branches, and the BIC8 form of its BIC11.
    assert authority(pacs008(instg_bic="AAAAUS33BRN", hdr_fr="AAAAUS33"), owned) == []


def test_owner_of_a_branch_covers_that_branch_only():
    assert authority(pacs008(instg_bic="AAAAUS33BRN", hdr_fr="AAAAUS33BRN"), {"AAAAUS33BRN"}) == []
    assert authority(pacs008(instg_bic="AAAAUS33XXX", hdr_fr="AAAAUS33BRN"), {"AAAAUS33BRN"}) == [
        ("AG08", f"{PACS}/GrpHdr/InstgAgt/FinInstnId/BICFI", None),
    ]
    assert authority(pacs008(instg_bic="AAAAUS33BRN", hdr_fr="AAAAUS33"), {"AAAAUS33BRN"}) == [
        ("AG08", "/AppHdr/Fr/FIId/FinInstnId/BICFI", None),
    ]


def test_ag08_sending_in_another_banks_name():
    data = pacs008(instg_bic="EVILGB2L", hdr_fr="AAAAUS33")
    assert authority(data, {"AAAAUS33"}) == [("AG08", f"{PACS}/GrpHdr/InstgAgt/FinInstnId/BICFI", None)]
    data = pacs008(instg_bic="AAAAUS33", hdr_fr="EVILGB2L")
    assert authority(data, {"AAAAUS33"}) == [("AG08", "/AppHdr/Fr/FIId/FinInstnId/BICFI", None)]
    (f,) = check_sender_authority(
        PACS008, split(data)[1], extract_refs(PACS008, split(data)[1]), split(data)[0], frozenset({"AAAAUS33"})
    )
    assert f.detail == "AppHdr/Fr EVILGB2L is not a BIC of the sending participant"


def test_ag08_per_transaction_instructing_agent():
    txs = [Tx(end_to_end_id="A", instg_agt_bic="AAAAUS33"), Tx(end_to_end_id="B", instg_agt_bic="EVILGB2L")]
    data = pacs008(instg_bic=None, txs=txs, hdr_fr="AAAAUS33")
    assert authority(data, {"AAAAUS33"}) == [("AG08", f"{PACS}/CdtTrfTxInf[2]/InstgAgt/FinInstnId/BICFI", "B")]


def test_ag08_nobody_owns_anything():
    assert authority(pacs008(), set()) == [
        ("AG08", f"{PACS}/GrpHdr/InstgAgt/FinInstnId/BICFI", None),
        ("AG08", "/AppHdr/Fr/FIId/FinInstnId/BICFI", None),
    ]


def test_ag08_agent_without_a_bic_cannot_be_verified():
    _hdr, doc = split(pacs008(app_hdr=False))
    ns = PACS008.namespace
    bicfi = doc.find(f".//{{{ns}}}GrpHdr/{{{ns}}}InstgAgt/{{{ns}}}FinInstnId/{{{ns}}}BICFI")
    fin = bicfi.getparent()
    fin.remove(bicfi)
    etree.SubElement(etree.SubElement(fin, f"{{{ns}}}ClrSysMmbId"), f"{{{ns}}}MmbId").text = "021000021"
    (f,) = check_sender_authority(PACS008, doc, extract_refs(PACS008, doc), None, frozenset({"AAAAUS33"}))
    assert (f.code, f.path) == ("AG08", f"{PACS}/GrpHdr/InstgAgt")
    assert "no BICFI" in f.detail


def test_ag08_pain_every_debtor_agent():
    data = pain001(
        pmt_infs=[
            PmtInf("P-1", dbtr_agt_bic="AAAAUS33"),
            PmtInf("P-2", [Tx(end_to_end_id="X")], dbtr_agt_bic="EVILGB2L"),
            PmtInf("P-3", [Tx(end_to_end_id="Y")], dbtr_agt_bic="AAAAUS33NYC"),
        ]
    )
    assert authority(data, {"AAAAUS33XXX"}) == [("AG08", f"{PAIN}/PmtInf[2]/DbtrAgt/FinInstnId/BICFI", None)]


def test_pain_app_hdr_from_is_checked_too():
    data = pain001(app_hdr=True, hdr_fr="EVILGB2L")
    assert authority(data, {"AAAAUS33"}) == [("AG08", "/AppHdr/Fr/FIId/FinInstnId/BICFI", None)]


def test_transaction_level_instructed_agent_is_not_a_claim():
    data = pacs008(instd_bic=None, txs=[Tx(instd_agt_bic="ZZZZDEFF")])
    assert authority(data, {"AAAAUS33"}) == []


def test_builder_tx_replace_keeps_defaults():
    # A guard for the builders the rules tests lean on: replace() on a Tx keeps every other default.
    assert replace(Tx(), amount="1").creditor_iban == Tx().creditor_iban


def test_non_ascii_digits_are_not_a_count():
    # "²".isdigit() is True and int("²") raises: the rule must report, not crash (the XSD refuses it first).
    assert found(pacs008(nb_of_txs="\u00b2")) == [("AM19", f"{PACS}/GrpHdr/NbOfTxs", None)]


def test_bulk_file_every_transaction_reported():
    # 3,000 bad creditor IBANs over 30 PmtInf: one finding each, mapped to its transaction. A lookup per
    # finding that scanned every transaction would make this quadratic (and slow).
    pmt_infs = [
        PmtInf(f"P-{p}", [Tx(end_to_end_id=f"E-{p}-{i}", creditor_iban="GB00NWBK60161331926819") for i in range(100)])
        for p in range(30)
    ]
    findings = rules(pain001(pmt_infs=pmt_infs))
    assert len(findings) == 3000
    assert {f.code for f in findings} == {"AC03"}
    assert findings[-1].tx_ref == "E-29-99"
    assert findings[-1].path == f"{PAIN}/PmtInf[30]/CdtTrfTxInf[100]/CdtrAcct/Id/IBAN"


@pytest.mark.parametrize(
    "data",
    [
        pacs008(),
        pacs008(txs=make_txs(3), sttlm_mtd="INDA", instg_bic=None, instd_bic=None, sttlm_dt=None),
        pacs008(ctrl_sum=OMIT, ttl=OMIT, txs=[Tx(uetr=None, tx_id=None, instr_id="I", chrg_br="DEBT")]),
        pacs008(txs=[Tx(instg_agt_bic="AAAAUS33", instd_agt_bic="BBBBDEFF")], instg_bic=None, instd_bic=None),
        pain001(),
        pain001(app_hdr=True, pmt_infs=[PmtInf("P-1", make_txs(2)), PmtInf("P-2", nb_of_txs=OMIT, ctrl_sum=OMIT)]),
    ],
    ids=["pacs008", "pacs008-inda", "pacs008-minimal", "pacs008-tx-agents", "pain001", "pain001-hdr"],
)
def test_builders_validate_against_the_official_and_the_project_xsds(data: bytes):
    from tests.builders import reference_schema

    hdr, doc = split(data)
    message_id = etree.QName(doc).namespace.rsplit(":", 1)[1]
    for schema in (reference_schema(message_id), project_schema(message_id)):
        assert schema.validate(doc), schema.error_log
    if hdr is not None:
        head = project_schema("head.001.001.02")
        assert head.validate(hdr), head.error_log


@pytest.mark.parametrize("n", [1, 4])
def test_identifier_findings_keep_document_order(n: int):
    # Messages with several transactions are first checked tag by tag; findings must still come in document
    # order (the creditor agent's BIC before the creditor's IBAN), each with its own code and transaction.
    txs = make_txs(n)
    txs[-1] = Tx(end_to_end_id="E-bad", creditor_iban="GB00NWBK60161331926819", cdtr_agt_bic="BBBBZZFF")
    tx = f"{PACS}/CdtTrfTxInf[{n}]" if n > 1 else f"{PACS}/CdtTrfTxInf"
    assert found(pacs008(txs=txs)) == [
        ("RC01", f"{tx}/CdtrAgt/FinInstnId/BICFI", "E-bad"),
        ("AC03", f"{tx}/CdtrAcct/Id/IBAN", "E-bad"),
    ]


def test_valid_bic_memo_changes_no_verdict():
    # A BIC remembered as valid is never a pass for an IBAN element, nor for a different BIC.
    assert bic_problem("AAAAUS33XXX") is None and found(pacs008()) == []
    data = pacs008(txs=[Tx(creditor_iban="AAAAUS33XXX", cdtr_agt_bic="AAAAZZ33XXX")])
    assert [code for code, _, _ in found(data)] == ["RC01", "AC03"]


# -- issue 4: pacs.009, pacs.004, pacs.028, camt.056, camt.029, pain.008 ------------------------------------------

FI = "/Document/FICdtTrf"
RTR = "/Document/PmtRtr"
CXL = "/Document/FIToFIPmtCxlReq"
DD = "/Document/CstmrDrctDbtInitn"


def valid_then_found(message_id: str, data: bytes) -> list[tuple[str, str | None, str | None]]:
    """The rule findings of a message that the XSD accepts (so each finding is the rules' own)."""
    schema = project_schema(message_id)
    assert schema.validate(etree.fromstring(data)), schema.error_log
    return found(data)


@pytest.mark.parametrize(
    ("message_id", "build"),
    [
        ("pacs.009.001.08", msgs.pacs009),
        ("pacs.009.001.09", msgs.pacs009),
        ("pacs.004.001.09", msgs.pacs004),
        ("pacs.004.001.10", msgs.pacs004),
        ("pacs.028.001.03", msgs.pacs028),
        ("pacs.028.001.04", msgs.pacs028),
        ("camt.056.001.08", msgs.camt056),
        ("camt.056.001.09", msgs.camt056),
        ("camt.029.001.09", msgs.camt029),
        ("camt.029.001.10", msgs.camt029),
        ("pain.008.001.08", msgs.pain008),
        ("pain.008.001.09", msgs.pain008),
    ],
)
def test_new_types_pass_when_right(message_id, build):
    assert valid_then_found(message_id, build(message_id)) == []


@pytest.mark.parametrize("message_id", ["pacs.009.001.08", "pacs.009.001.09"])
def test_pacs009_counts_sums_decimals_and_bics(message_id):
    txs = [msgs.FiTx(), msgs.FiTx(end_to_end_id="E2E-2", tx_id="TX-2", amount="10.001", creditor_bic="CCCCZZ2L")]
    data = msgs.pacs009(message_id, txs=txs, nb_of_txs="3", ctrl_sum="1.00", ttl="1010.00")
    assert valid_then_found(message_id, data) == [
        ("AM19", f"{FI}/GrpHdr/NbOfTxs", None),
        ("AM16", f"{FI}/GrpHdr/CtrlSum", None),
        ("AM10", f"{FI}/GrpHdr/TtlIntrBkSttlmAmt", None),
        ("CH20", f"{FI}/CdtTrfTxInf[2]/IntrBkSttlmAmt", "E2E-2"),
        ("RC01", f"{FI}/CdtTrfTxInf[2]/Cdtr/FinInstnId/BICFI", "E2E-2"),
    ]


def test_pacs009_currency_and_agent_levels():
    txs = [msgs.FiTx(ccy="USD", instg_agt_bic="AAAAUS33")]
    assert valid_then_found("pacs.009.001.08", msgs.pacs009(txs=txs, ttl="1000.00")) == [
        ("CURR", f"{FI}/CdtTrfTxInf/IntrBkSttlmAmt", "E2E-1"),
        ("CH17", f"{FI}/CdtTrfTxInf/InstgAgt", "E2E-1"),
    ]


@pytest.mark.parametrize("message_id", ["pacs.004.001.09", "pacs.004.001.10"])
def test_pacs004_returned_amounts_and_totals(message_id):
    txs = [msgs.Orig(amount="60.00"), msgs.Orig(end_to_end_id="E2E-2", amount="0.125")]
    data = msgs.pacs004(message_id, txs=txs, nb_of_txs="1", ctrl_sum="60.00", ttl="70.00")
    result = valid_then_found(message_id, data)
    assert result == [
        ("AM19", f"{RTR}/GrpHdr/NbOfTxs", None),
        ("AM16", f"{RTR}/GrpHdr/CtrlSum", None),
        ("AM10", f"{RTR}/GrpHdr/TtlRtrdIntrBkSttlmAmt", None),
        ("CH20", f"{RTR}/TxInf[2]/RtrdIntrBkSttlmAmt", "E2E-2"),
    ]
    why = {f.code: f.detail for f in rules(data)}
    assert why["AM10"] == "TtlRtrdIntrBkSttlmAmt says 70.00, RtrdIntrBkSttlmAmt sum to 60.125"


@pytest.mark.parametrize("message_id", ["pacs.004.001.09", "pacs.028.001.03", "camt.056.001.08", "camt.029.001.09"])
def test_original_references_must_be_present(message_id):
    build = {"pacs.004": msgs.pacs004, "pacs.028": msgs.pacs028}.get(message_id[:8])
    no_ids = msgs.Orig(end_to_end_id=None, tx_id=None, uetr=None)
    txs = [msgs.Orig(), no_ids]
    if build is not None:
        data = build(message_id, original_msg_id=None, txs=txs)
        tx_name = "TxInf"
        base = RTR if message_id.startswith("pacs.004") else "/Document/FIToFIPmtStsReq"
    else:
        underlying = [msgs.Underlying(None, txs)]
        if message_id.startswith("camt.056"):
            data, tx_name, base = msgs.camt056(message_id, underlying=underlying), "TxInf", f"{CXL}/Undrlyg"
        else:
            data, tx_name = msgs.camt029(message_id, details=underlying), "TxInfAndSts"
            base = "/Document/RsltnOfInvstgtn/CxlDtls"
    assert valid_then_found(message_id, data) == [
        ("CH21", f"{base}/{tx_name}[1]", "E2E-1"),
        ("CH21", f"{base}/{tx_name}[2]", f"{base}/{tx_name}[2]"),
        ("CH21", f"{base}/{tx_name}[2]", f"{base}/{tx_name}[2]"),
    ]
    # Naming the original message at the group level, or on the transaction itself, is enough.
    fixed = [msgs.Orig(), msgs.Orig(msg_id="ORIG-2", uetr="auto", end_to_end_id=None, tx_id=None)]
    if build is not None:
        assert valid_then_found(message_id, build(message_id, original_msg_id="ORIG-1", txs=fixed)) == []
    elif message_id.startswith("camt.056"):
        assert valid_then_found(message_id, msgs.camt056(message_id, underlying=[msgs.Underlying("O", fixed)])) == []


@pytest.mark.parametrize("message_id", ["camt.056.001.08", "camt.056.001.09"])
def test_camt056_control_data(message_id):
    underlying = [msgs.Underlying("ORIG-1", [msgs.Orig(), msgs.Orig(end_to_end_id="E2E-2", amount="1.5", ccy="JPY")])]
    data = msgs.camt056(message_id, underlying=underlying, nb_of_txs="1", ctrl_sum="100.00")
    assert valid_then_found(message_id, data) == [
        ("AM19", f"{CXL}/CtrlData/NbOfTxs", None),
        ("AM16", f"{CXL}/CtrlData/CtrlSum", None),
        ("CH20", f"{CXL}/Undrlyg/TxInf[2]/OrgnlIntrBkSttlmAmt", "E2E-2"),
    ]
    # CtrlData is optional: no count to check without it.
    assert valid_then_found(message_id, msgs.camt056(message_id, nb_of_txs=OMIT)) == []


@pytest.mark.parametrize("message_id", ["pain.008.001.08", "pain.008.001.09"])
def test_pain008_counts_sums_and_mandates(message_id):
    pmt_infs = [
        msgs.DdPmtInf("PMT-1", [msgs.DdTx(), msgs.DdTx(end_to_end_id="E2E-2", mandate_id=None)], nb_of_txs="3"),
        msgs.DdPmtInf("PMT-2", [msgs.DdTx(end_to_end_id="E2E-3", debtor_iban="DE00370400440532013000")], ctrl_sum="9"),
    ]
    data = msgs.pain008(message_id, pmt_infs=pmt_infs, ctrl_sum="1.00")
    assert valid_then_found(message_id, data) == [
        ("AM16", f"{DD}/GrpHdr/CtrlSum", None),
        ("AM20", f"{DD}/PmtInf[1]/NbOfTxs", None),
        ("AM17", f"{DD}/PmtInf[2]/CtrlSum", None),
        ("MD01", f"{DD}/PmtInf[1]/DrctDbtTxInf[2]/DrctDbtTx", "E2E-2"),
        ("AC02", f"{DD}/PmtInf[2]/DrctDbtTxInf/DbtrAcct/Id/IBAN", "E2E-3"),
    ]


def test_status_reports_get_identifier_checks_only():
    # A pacs.002 is not counted nor summed (it has no amounts to agree), but a bad BIC in it is still found.
    data = msgs.document(
        "pacs.002.001.11",
        "FIToFIPmtStsRpt",
        [
            ("GrpHdr", [("MsgId", "R-1"), ("CreDtTm", msgs.CRE_DT_TM), msgs.agent("InstgAgt", "AAAAQQ33")]),
            ("OrgnlGrpInfAndSts", [("OrgnlMsgId", "O-1"), ("OrgnlMsgNmId", "pacs.008.001.09"), ("GrpSts", "ACSC")]),
        ],
    )
    assert valid_then_found("pacs.002.001.11", data) == [
        ("RC01", "/Document/FIToFIPmtStsRpt/GrpHdr/InstgAgt/FinInstnId/BICFI", None)
    ]


# -- sender authority for the new types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_id", "data", "owned", "expected"),
    [
        ("pacs.009.001.09", msgs.pacs009("pacs.009.001.09"), {"AAAAUS33"}, []),
        (
            "pacs.009.001.08",
            msgs.pacs009(),
            {"BBBBDEFF"},
            [("AG08", f"{FI}/GrpHdr/InstgAgt/FinInstnId/BICFI", None)],
        ),
        ("pacs.004.001.09", msgs.pacs004(), {"BBBBDEFFXXX"}, []),
        (
            "pacs.004.001.10",
            msgs.pacs004("pacs.004.001.10"),
            {"AAAAUS33"},
            [("AG08", f"{RTR}/GrpHdr/InstgAgt/FinInstnId/BICFI", None)],
        ),
        ("pacs.028.001.03", msgs.pacs028(), {"AAAAUS33"}, []),
        ("camt.056.001.08", msgs.camt056(), {"AAAAUS33"}, []),
        (
            "camt.056.001.09",
            msgs.camt056("camt.056.001.09"),
            {"BBBBDEFF"},
            [("AG08", f"{CXL}/Assgnmt/Assgnr/Agt/FinInstnId/BICFI", None)],
        ),
        ("camt.056.001.08", msgs.camt056(assigner_bic=None), {"AAAAUS33"}, [("AG08", f"{CXL}/Assgnmt/Assgnr", None)]),
        ("camt.029.001.09", msgs.camt029(), {"BBBBDEFF"}, []),
        (
            "camt.029.001.10",
            msgs.camt029("camt.029.001.10"),
            {"AAAAUS33"},
            [("AG08", "/Document/RsltnOfInvstgtn/Assgnmt/Assgnr/Agt/FinInstnId/BICFI", None)],
        ),
        # pain.008: the creditor's bank presents the collection; owning the debtor's bank is not enough.
        ("pain.008.001.08", msgs.pain008(), {"AAAAGB2L"}, []),
        (
            "pain.008.001.09",
            msgs.pain008("pain.008.001.09"),
            {"BBBBDEFF"},
            [("AG08", f"{DD}/PmtInf/CdtrAgt/FinInstnId/BICFI", None)],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v and len(v) < 20 else None,
)
def test_sender_authority_for_new_types(message_id, data, owned, expected):
    assert project_schema(message_id).validate(etree.fromstring(data))
    assert authority(data, owned) == expected


def _walked_path(el: etree._Element) -> str:
    """The path by hand: up to AppHdr/Document, counting same-name element siblings (the reference)."""
    steps = []
    node = el
    while node.getparent() is not None:
        same = [c for c in node.getparent() if c.tag == node.tag]
        steps.append(etree.QName(node).localname + (f"[{same.index(node) + 1}]" if len(same) > 1 else ""))
        if node.getparent().getparent() is None:
            break
        node = node.getparent()
    return "/" + "/".join(reversed(steps))


def test_element_path_names_every_element_as_a_walk_up_the_tree_does():
    # In an envelope (paths start at AppHdr/Document, never at our envelope root), with a comment among siblings.
    envelope = etree.fromstring(pacs008(txs=make_txs(4)))
    envelope[1].insert(0, etree.Comment("a comment is not a sibling"))
    elements = [e for part in envelope for e in part.iter(etree.Element) if e is not part]
    assert len(elements) > 100
    assert [element_path(e) for e in elements] == [_walked_path(e) for e in elements]


def test_identifier_findings_carry_their_source_line():
    data = etree.tostring(
        etree.fromstring(pacs008(txs=[Tx(creditor_iban="GB00NWBK60161331926819")])), pretty_print=True
    )
    lines = data.decode().splitlines()
    (finding,) = rules(data)
    assert finding.code == "AC03" and finding.line is not None
    assert "<IBAN>GB00NWBK60161331926819</IBAN>" in lines[finding.line - 1]


# -- a payment that names nobody as instructing it is sent as its debtor's bank ---------------------------------


def test_a_pacs008_without_instgagt_or_apphdr_is_sent_as_its_debtor_agent():
    # bank-b (BBBBDEFF) pays out of bank-a's customer account with no InstgAgt and no AppHdr: in bank-a's name.
    data = pacs008(instg_bic=None, instd_bic=None, app_hdr=False, txs=[Tx(dbtr_agt_bic="AAAAUS33XXX")])
    path = f"{PACS}/CdtTrfTxInf/DbtrAgt/FinInstnId/BICFI"
    assert authority(data, {"BBBBDEFFXXX"}) == [("AG08", path, "E2E-1")]
    assert authority(data, {"AAAAUS33XXX"}) == []


def test_an_instgagt_or_apphdr_names_the_sender_instead_of_the_debtor_agent():
    # A bank in the chain after the debtor's bank says who it is; the AppHdr Fr says it for the whole message.
    with_instg = pacs008(instg_bic="BBBBDEFFXXX", app_hdr=False, txs=[Tx(dbtr_agt_bic="AAAAUS33XXX")])
    assert authority(with_instg, {"BBBBDEFFXXX"}) == []
    with_hdr = pacs008(instg_bic=None, instd_bic=None, txs=[Tx(dbtr_agt_bic="AAAAUS33XXX")])
    assert authority(with_hdr, {"AAAAUS33XXX"}) == []  # the AppHdr's Fr is AAAAUS33 (the builder's sender)
    assert [code for code, _, _ in authority(with_hdr, {"BBBBDEFFXXX"})] == ["AG08"]  # Fr, not the debtor agent


def test_a_pacs009_without_instgagt_is_sent_as_its_debtor_institution():
    data = msgs.pacs009(instg_bic=None, instd_bic=None)
    findings = authority(data, {"BBBBDEFFXXX"})
    assert [(code, path) for code, path, _ in findings] == [
        ("AG08", "/Document/FICdtTrf/CdtTrfTxInf/Dbtr/FinInstnId/BICFI")
    ]
    assert authority(data, {"AAAAUS33XXX"}) == []


# -- every finding whose element exists carries its source line ------------------------------------------------


def test_rule_findings_carry_the_line_of_the_element_their_path_names():
    data = etree.tostring(
        etree.fromstring(pacs008(nb_of_txs="3", txs=make_txs(2), instg_bic="AAAAUS33XXX")), pretty_print=True
    )
    hdr, doc = split(data)
    findings = check_rules(def_of(doc), doc, extract_refs(def_of(doc), doc), hdr)
    nb = next(f for f in findings if f.path and f.path.endswith("/GrpHdr/NbOfTxs"))
    assert (
        nb.line
        == doc.find(
            f"{{{PACS008.namespace}}}FIToFICstmrCdtTrf/{{{PACS008.namespace}}}GrpHdr/{{{PACS008.namespace}}}NbOfTxs"
        ).sourceline
    )
    assert nb.line is not None and nb.line > 1
