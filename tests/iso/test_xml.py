"""Hardened parsing and the envelope split: what shapes are accepted, and how refusals read."""

from __future__ import annotations

import pytest

from switchd.errors import Rejection, RejectKind
from switchd.iso.xml import element_path, parse_message
from tests.builders import pacs008

NS = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"
HEAD = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"


def _refused(raw: bytes, max_bytes: int = 1_000_000) -> Rejection:
    with pytest.raises(Rejection) as exc:
        parse_message(raw, max_bytes=max_bytes)
    return exc.value


def test_bare_document_and_envelope_are_split() -> None:
    bare = parse_message(pacs008(app_hdr=False), max_bytes=100_000)
    assert bare.app_hdr is None and bare.namespace == NS
    wrapped = parse_message(pacs008(), max_bytes=100_000)
    assert wrapped.app_hdr is not None and wrapped.app_hdr_namespace == HEAD
    assert wrapped.document.tag == f"{{{NS}}}Document"


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"<Document><a></Document>", "not well-formed"),
        (b'<Document xmlns="urn:other"/>', "not an ISO 20022 namespace"),
        (f'<Env><Document xmlns="{NS}"/><AppHdr xmlns="{HEAD}"/></Env>'.encode(), "AppHdr then Document"),
        (f'<Env><AppHdr xmlns="{HEAD}"/></Env>'.encode(), "AppHdr then Document"),
        (
            f'<Env><AppHdr xmlns="{HEAD}"/><Document xmlns="{NS}"/><Document xmlns="{NS}"/></Env>'.encode(),
            "AppHdr then Document",
        ),
        (f'<Env><AppHdr xmlns="urn:x"/><Document xmlns="{NS}"/></Env>'.encode(), "head.001"),
        (f'<Env>text<AppHdr xmlns="{HEAD}"/><Document xmlns="{NS}"/></Env>'.encode(), "text outside"),
    ],
)
def test_malformed_shapes_are_400_ff01(raw: bytes, words: str) -> None:
    rej = _refused(raw)
    assert rej.kind is RejectKind.NOT_WELL_FORMED
    assert rej.findings[0].code == "FF01"
    assert words in rej.findings[0].detail


def test_doctype_is_refused_with_its_line_even_in_utf16() -> None:
    utf8 = (
        b'<?xml version="1.0"?>\n\n<!DOCTYPE d [<!ENTITY x "y">]>' + f'<Document xmlns="{NS}">&x;</Document>'.encode()
    )
    rej = _refused(utf8)
    assert rej.findings[0].detail == "DOCTYPE is not allowed"
    assert rej.findings[0].line == 3
    # the byte scan cannot see a UTF-16 DOCTYPE; the parsed document's docinfo must
    utf16 = f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d><Document xmlns="{NS}"/>'.encode("utf-16")
    assert b"<!DOCTYPE" not in utf16
    assert _refused(utf16).findings[0].detail == "DOCTYPE is not allowed"


def test_size_cap_is_413_before_parsing() -> None:
    rej = _refused(b"<a/>" + b" " * 2000, max_bytes=1000)
    assert rej.kind is RejectKind.TOO_LARGE


def test_comments_and_processing_instructions_are_dropped() -> None:
    raw = f'<?xml version="1.0"?><!-- c --><?pi x?><Document xmlns="{NS}"><!-- inner --></Document>'.encode()
    parsed = parse_message(raw, max_bytes=10_000)
    assert len(parsed.document) == 0


def test_element_path_indexes_only_repeated_names() -> None:
    raw = pacs008(app_hdr=False)
    parsed = parse_message(raw, max_bytes=100_000)
    msgid = parsed.document[0][0][0]
    assert element_path(msgid) == "/Document/FIToFICstmrCdtTrf/GrpHdr/MsgId"


@pytest.mark.parametrize("decl", [b'xmlns:z="not/absolute"', b"xmlns:z='rel'", b'xmlns:z="#frag"'])
def test_a_relative_namespace_uri_is_400_ff01(decl: bytes) -> None:
    """Canonical XML cannot represent it: such a message could not be signed for the bank nor have its signature
    checked, so it is refused at the door (it used to be accepted and then wait for ever at delivery)."""
    raw = pacs008().replace(b"<MsgId>", b"<MsgId " + decl + b">", 1)
    with pytest.raises(Rejection) as exc:
        parse_message(raw, max_bytes=len(raw))
    assert exc.value.kind is RejectKind.NOT_WELL_FORMED
    (finding,) = exc.value.findings
    assert finding.code == "FF01" and "not an absolute namespace URI" in finding.detail and finding.line


def test_absolute_namespace_uris_and_lookalike_text_are_fine() -> None:
    raw = pacs008().replace(b"<MsgId>", b'<MsgId xmlns:z="urn:example:x" xmlns:h="http://example.org/a">', 1)
    assert parse_message(raw, max_bytes=len(raw)).namespace.endswith("pacs.008.001.08")
    text = pacs008(msg_id='xmlns:q="rel"')  # looks like a declaration to the byte scan, is text
    assert b'>xmlns:q="rel"<' in text
    assert parse_message(text, max_bytes=len(text)).document is not None
