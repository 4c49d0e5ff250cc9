"""The outbound envelope: AppHdr built or derived, valid against head.001.001.02 and the Document's XSD, agreeing
with the Document (no FF01), accepted by our own parser; PssblDplct set, cleared and read on stored bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from switchd.examine import Examiner
from switchd.iso.bulk import split_document
from switchd.iso.outbound import (
    APP_HDR_ORDER,
    ENVELOPE_TAG,
    HEAD_NS,
    build_app_hdr,
    build_envelope,
    document_ids,
    format_cre_dt,
    is_possible_duplicate,
    outbound_envelope,
    set_possible_duplicate,
)
from switchd.iso.refs import extract_refs
from switchd.iso.xml import parse_message
from switchd.schemas import load_schemas
from tests.builders import SCHEMAS, PmtInf, make_txs, message_def, pacs008, pain001
from tests.iso.messages import camt029, camt056

SWITCH = "SWCHGB2LXXX"
BANK = "BBBBDEFFXXX"
NOW = datetime(2026, 11, 23, 12, 30, 45, 123456, tzinfo=UTC)
Q = f"{{{HEAD_NS}}}"
DSIG = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture(scope="module")
def examiner() -> Examiner:
    catalogue, schemas = load_schemas(Path(SCHEMAS))
    return Examiner(catalogue, schemas, max_message_bytes=50_000_000)


def assert_accepted(examiner: Examiner, envelope: bytes) -> None:
    """Our own intake would take it: envelope shape, both XSDs, AppHdr/Document agreement (FF01), the rules."""
    exam = examiner.examine(envelope, None)
    assert exam.rejection is None, exam.rejection.findings
    assert exam.parsed is not None and exam.parsed.app_hdr is not None


def header(envelope: bytes) -> etree._Element:
    hdr = parse_message(envelope, max_bytes=len(envelope)).app_hdr
    assert hdr is not None
    return hdr


def names(hdr: etree._Element) -> list[str]:
    return [etree.QName(c).localname for c in hdr]


def bic(hdr: etree._Element, party: str) -> str | None:
    return hdr.findtext(f"{Q}{party}/{Q}FIId/{Q}FinInstnId/{Q}BICFI")


def bare_document(raw: bytes) -> etree._Element:
    return parse_message(raw, max_bytes=len(raw)).document


def full_inbound_header() -> etree._Element:
    """An inbound AppHdr using every optional element the derivation must decide about, in XSD order."""
    raw = pacs008(txs=make_txs(2))
    hdr = header(raw)
    extra = {
        "CharSet": "UTF-8",
        "BizSvc": "swift.cbprplus.02",
        "MktPrctc": None,
        "BizPrcgDt": "2026-11-23T00:00:00+00:00",
        "CpyDplct": "COPY",
        "PssblDplct": "true",
        "Prty": "HIGH",
        "Sgntr": None,
    }
    for name, text in extra.items():
        el = etree.Element(Q + name)
        el.text = text
        if name == "MktPrctc":
            etree.SubElement(el, Q + "Regy").text = "swift"
            etree.SubElement(el, Q + "Id").text = "cbprplus"
        if name == "Sgntr":
            etree.SubElement(el, f"{{{DSIG}}}Signature", nsmap={"ds": DSIG}).text = "sig"
        rank = APP_HDR_ORDER.index(name)
        position = next(
            (i for i, c in enumerate(hdr) if APP_HDR_ORDER.index(etree.QName(c).localname) > rank), len(hdr)
        )
        hdr.insert(position, el)
    rltd = etree.SubElement(hdr, Q + "Rltd")
    for party, value in (("Fr", "AAAAUS33XXX"), ("To", SWITCH)):
        etree.SubElement(
            etree.SubElement(etree.SubElement(etree.SubElement(rltd, Q + party), Q + "FIId"), Q + "FinInstnId"),
            Q + "BICFI",
        ).text = value
    for name, text in (("BizMsgIdr", "EARLIER-1"), ("MsgDefIdr", "pacs.008.001.08"), ("CreDt", "2026-11-22T09:00:00Z")):
        etree.SubElement(rltd, Q + name).text = text
    return hdr


# -- the AppHdr ---------------------------------------------------------------------------------------------------


def test_built_header_is_valid_and_in_schema_order(examiner: Examiner) -> None:
    hdr = build_app_hdr(
        fr_bic=SWITCH,
        to_bic=BANK,
        biz_msg_idr="MSG-1",
        msg_def_idr="pacs.008.001.08",
        cre_dt=NOW,
        biz_svc="swift.cbprplus.02",
        possible_duplicate=True,
    )
    assert examiner.schemas.validate(message_def("head.001.001.02"), hdr) == []
    assert names(hdr) == ["Fr", "To", "BizMsgIdr", "MsgDefIdr", "BizSvc", "CreDt", "PssblDplct"]
    assert (bic(hdr, "Fr"), bic(hdr, "To")) == (SWITCH, BANK)
    assert hdr.findtext(Q + "CreDt") == "2026-11-23T12:30:45.123+00:00"
    minimal = build_app_hdr(fr_bic=SWITCH, to_bic=BANK, biz_msg_idr="M", msg_def_idr="pain.001.001.09", cre_dt=NOW)
    assert names(minimal) == ["Fr", "To", "BizMsgIdr", "MsgDefIdr", "CreDt"]
    assert examiner.schemas.validate(message_def("head.001.001.02"), minimal) == []


def test_cre_dt_is_utc_with_an_offset_and_must_have_a_zone() -> None:
    assert format_cre_dt(datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-01-02T03:04:05.000+00:00"
    )
    with pytest.raises(ValueError, match="no time zone"):
        format_cre_dt(datetime(2026, 1, 2, 3, 4, 5))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"fr_bic": "SWCH"}, "AppHdr/Fr"),
        ({"to_bic": "BBBBZZFFXXX"}, "AppHdr/To"),
        ({"biz_msg_idr": "M" * 36}, "BizMsgIdr"),
        ({"biz_msg_idr": ""}, "BizMsgIdr"),
        ({"biz_svc": "S" * 36}, "BizSvc"),
    ],
)
def test_bad_header_values_are_refused(change: dict[str, str], match: str) -> None:
    args = {"fr_bic": SWITCH, "to_bic": BANK, "biz_msg_idr": "MSG-1", "msg_def_idr": "pacs.008.001.08"} | change
    with pytest.raises(ValueError, match=match):
        build_app_hdr(cre_dt=NOW, **args)  # type: ignore[arg-type]


def test_derived_header_keeps_the_business_fields_and_drops_signature_and_duplicate_mark(examiner: Examiner) -> None:
    inbound = full_inbound_header()
    head = message_def("head.001.001.02")
    assert examiner.schemas.validate(head, inbound) == []  # the test input itself is a valid header
    before = etree.tostring(inbound)
    hdr = build_app_hdr(
        inbound, fr_bic=SWITCH, to_bic=BANK, biz_msg_idr="OUT-1", msg_def_idr="pacs.008.001.08", cre_dt=NOW
    )
    assert etree.tostring(inbound) == before
    assert examiner.schemas.validate(head, hdr) == []
    assert names(hdr) == [
        "CharSet",
        "Fr",
        "To",
        "BizMsgIdr",
        "MsgDefIdr",
        "BizSvc",
        "MktPrctc",
        "CreDt",
        "BizPrcgDt",
        "CpyDplct",
        "Prty",
        "Rltd",
    ]
    assert (bic(hdr, "Fr"), bic(hdr, "To"), hdr.findtext(Q + "BizMsgIdr")) == (SWITCH, BANK, "OUT-1")
    assert hdr.findtext(Q + "CpyDplct") == "COPY"  # an information copy must stay one
    assert hdr.findtext(Q + "BizSvc") == "swift.cbprplus.02"
    assert hdr.findtext(f"{Q}Rltd/{Q}BizMsgIdr") == "EARLIER-1"
    assert hdr.findtext(Q + "CreDt") == "2026-11-23T12:30:45.123+00:00"
    replaced = build_app_hdr(
        inbound,
        fr_bic=SWITCH,
        to_bic=BANK,
        biz_msg_idr="OUT-1",
        msg_def_idr="pacs.008.001.08",
        cre_dt=NOW,
        biz_svc="other.service",
        possible_duplicate=True,
    )
    assert replaced.findtext(Q + "BizSvc") == "other.service"
    assert replaced.findtext(Q + "PssblDplct") == "true"
    assert examiner.schemas.validate(head, replaced) == []


# -- the envelope -------------------------------------------------------------------------------------------------


def test_envelope_for_a_bare_document(examiner: Examiner) -> None:
    raw = pacs008(txs=make_txs(2), app_hdr=False)
    envelope = outbound_envelope(bare_document(raw), fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW).unsigned
    assert_accepted(examiner, envelope)
    root = etree.fromstring(envelope)
    assert root.tag == ENVELOPE_TAG and [etree.QName(c).localname for c in root] == ["AppHdr", "Document"]
    hdr = header(envelope)
    assert (bic(hdr, "Fr"), bic(hdr, "To")) == (SWITCH, BANK)
    assert (hdr.findtext(Q + "BizMsgIdr"), hdr.findtext(Q + "MsgDefIdr")) == ("MSG-1", "pacs.008.001.08")
    assert not is_possible_duplicate(envelope)
    assert envelope.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<BizMsg")


def test_the_document_is_carried_byte_for_byte_with_its_whitespace() -> None:
    raw = pacs008(txs=make_txs(2), app_hdr=False, pretty=True)
    document = etree.tostring(bare_document(raw))
    envelope = outbound_envelope(raw, fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW).unsigned
    assert document in envelope
    assert b"\n" not in envelope.split(b"<Document", 1)[0].split(b"\n", 1)[1]  # nothing indented in our part


def test_envelope_for_each_split_part_agrees_with_its_document(examiner: Examiner) -> None:
    raw = pain001(pmt_infs=[PmtInf("PMT-1", make_txs(3))], app_hdr=True, hdr_to=SWITCH)
    parsed = parse_message(raw, max_bytes=len(raw))
    defn = message_def("pain.001.001.09")
    parts = split_document(
        parsed.document, defn, extract_refs(defn, parsed.document), [[0, 2], [1]], ["PAIN-1-A", "PAIN-1-B"]
    )
    for part, msg_id in zip(parts, ["PAIN-1-A", "PAIN-1-B"], strict=True):
        envelope = outbound_envelope(
            part, fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW, inbound_app_hdr=parsed.app_hdr
        ).unsigned
        assert_accepted(examiner, envelope)
        assert header(envelope).findtext(Q + "BizMsgIdr") == msg_id
        assert document_ids(parse_message(envelope, max_bytes=len(envelope)).document) == ("pain.001.001.09", msg_id)


def test_a_header_that_disagrees_with_the_document_is_refused() -> None:
    raw = pacs008(app_hdr=False)
    hdr = build_app_hdr(fr_bic=SWITCH, to_bic=BANK, biz_msg_idr="OTHER", msg_def_idr="pacs.008.001.08", cre_dt=NOW)
    with pytest.raises(ValueError, match="BizMsgIdr 'OTHER'"):
        build_envelope(hdr, raw)
    hdr = build_app_hdr(fr_bic=SWITCH, to_bic=BANK, biz_msg_idr="MSG-1", msg_def_idr="pacs.008.001.09", cre_dt=NOW)
    with pytest.raises(ValueError, match=r"MsgDefIdr 'pacs\.008\.001\.09'"):
        build_envelope(hdr, raw)
    with pytest.raises(ValueError, match="expected a bare Document"):
        outbound_envelope(pacs008(), fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW)


def test_building_does_not_move_the_callers_document() -> None:
    raw = pacs008(txs=make_txs(2))
    parsed = parse_message(raw, max_bytes=len(raw))
    before = etree.tostring(parsed.root)
    outbound_envelope(parsed.document, fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW, inbound_app_hdr=parsed.app_hdr)
    assert etree.tostring(parsed.root) == before


# -- PssblDplct ---------------------------------------------------------------------------------------------------


def test_possible_duplicate_set_cleared_and_read(examiner: Examiner) -> None:
    envelope = outbound_envelope(pacs008(app_hdr=False), fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW).unsigned
    marked = set_possible_duplicate(envelope)
    assert is_possible_duplicate(marked) and not is_possible_duplicate(envelope)
    assert_accepted(examiner, marked)
    assert names(header(marked))[-1] == "PssblDplct"
    assert set_possible_duplicate(marked) == marked  # twice = once
    assert set_possible_duplicate(marked, False) == envelope  # cleared: the original bytes again
    assert set_possible_duplicate(envelope, False) == envelope
    # everything but the flag is unchanged
    assert marked.replace(b"<PssblDplct>true</PssblDplct>", b"") == envelope


def test_possible_duplicate_goes_where_the_schema_wants_it(examiner: Examiner) -> None:
    inbound = full_inbound_header()
    raw = pacs008(txs=make_txs(2), app_hdr=False)
    envelope = outbound_envelope(raw, fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW, inbound_app_hdr=inbound).unsigned
    marked = set_possible_duplicate(envelope)
    assert_accepted(examiner, marked)
    assert names(header(marked))[-4:] == ["CpyDplct", "PssblDplct", "Prty", "Rltd"]
    assert set_possible_duplicate(marked, False) == envelope


def test_possible_duplicate_on_an_indented_envelope_round_trips() -> None:
    envelope = pacs008(pretty=True)  # the builders' inbound form, indented
    marked = set_possible_duplicate(envelope)
    assert is_possible_duplicate(marked)
    assert b"<CreDt>2026-11-23T10:00:00Z</CreDt>\n    <PssblDplct>true</PssblDplct>\n  </AppHdr>" in marked
    assert set_possible_duplicate(marked, False) == envelope


def test_a_false_flag_reads_false_and_is_removed_by_clearing() -> None:
    envelope = outbound_envelope(pacs008(app_hdr=False), fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW).unsigned
    false = envelope.replace(b"</CreDt>", b"</CreDt><PssblDplct>false</PssblDplct>")
    assert not is_possible_duplicate(false)
    assert set_possible_duplicate(false, False) == envelope
    assert is_possible_duplicate(set_possible_duplicate(false))


def test_a_signed_header_is_not_changed_silently(examiner: Examiner) -> None:
    envelope = outbound_envelope(pacs008(app_hdr=False), fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW).unsigned
    signed = envelope.replace(
        b"</CreDt>", f'</CreDt><Sgntr><ds:Signature xmlns:ds="{DSIG}">sig</ds:Signature></Sgntr>'.encode()
    )
    assert_accepted(examiner, signed)
    with pytest.raises(ValueError, match="signed"):
        set_possible_duplicate(signed)
    resigned = set_possible_duplicate(signed, drop_signature=True)
    assert is_possible_duplicate(resigned) and b"Sgntr" not in resigned
    assert_accepted(examiner, resigned)


def test_possible_duplicate_needs_an_envelope() -> None:
    with pytest.raises(ValueError, match="bare Document"):
        set_possible_duplicate(pacs008(app_hdr=False))
    with pytest.raises(ValueError, match="not an envelope"):
        is_possible_duplicate(b"<oops")


def test_stored_bytes_keep_their_declaration_and_trailing_newline() -> None:
    ours = outbound_envelope(pacs008(app_hdr=False), fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW).unsigned
    stored = ours.replace(b"<?xml version='1.0' encoding='UTF-8'?>", b'<?xml version="1.0" encoding="utf-8"?>') + b"\n"
    marked = set_possible_duplicate(stored)
    assert marked.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<BizMsg') and marked.endswith(b"</BizMsg>\n")
    assert set_possible_duplicate(marked, False) == stored


def test_investigation_messages_are_identified_by_their_assignment(examiner: Examiner) -> None:
    """camt.056 / camt.029 have no GrpHdr: Assgnmt/Id is what the AppHdr's BizMsgIdr says (else never delivered)."""
    for raw, expected in ((camt056(assignment_id="CXL-9"), ("camt.056.001.08", "CXL-9")),
                          (camt029(assignment_id="RSL-9"), ("camt.029.001.09", "RSL-9"))):  # fmt: skip
        document = etree.fromstring(raw)
        assert document_ids(document) == expected
        envelope = outbound_envelope(document, fr_bic=SWITCH, to_bic=BANK, cre_dt=NOW).unsigned
        assert_accepted(examiner, envelope)
        assert header(envelope).findtext(Q + "BizMsgIdr") == expected[1]
