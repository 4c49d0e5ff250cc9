"""hsm.canonical: an envelope laid out as canonical bytes is signed exactly as the parsed envelope would be.

test_xmldsig.py runs every signature check (signxml, xmlsec1, openssl, tampering) on both ways of signing; this
module holds the canonical way to the tree way byte for byte on awkward inputs, and checks what the builder keeps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from lxml import etree

from hsm.canonical import canonical_envelope
from hsm.errors import SigningError
from hsm.xmldsig import SigningKey, c14n, sign_envelope, verify_envelope
from tests.builders import pacs008, pain001
from tests.hsm.conftest import SoftwareKey, laid_out, sign_laid_out

HEAD = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"


def _with_rltd_and_flag(raw: bytes) -> bytes:
    root = etree.fromstring(raw)
    hdr = root[0]
    etree.SubElement(hdr, f"{{{HEAD}}}PssblDplct").text = "true"
    related = copy.deepcopy(hdr)
    related.tag = f"{{{HEAD}}}Rltd"
    related.remove(related[-1])
    hdr.append(related)
    return etree.tostring(root)


def _awkward_text(raw: bytes) -> bytes:
    """Escapes C14N writes differently from a serialiser: quotes, tabs, newlines and CR in attributes, '>' and CR
    in text, non-ASCII, a CDATA section, an empty element, a comment."""
    data = raw.replace(
        b"<Nm>Alice Debtor</Nm>", b"<Nm a='x\"y&#9;z&#10;&#13;&lt;'>Al&gt;ice &#13;D\xc3\xa9btor \xf0\x9f\x92\xb6</Nm>"
    )
    data = data.replace(b"<Nm>Bob Creditor</Nm>", b"<Nm><![CDATA[Bob <&> Creditor]]><!-- note --></Nm><Empty/>")
    assert data != raw
    return data


def _prefixed_document(raw: bytes) -> bytes:
    """The Document under a prefix, with an unused declaration (exclusive C14N drops it)."""
    root = etree.fromstring(raw)
    doc = root[1]
    ns = etree.QName(doc).namespace
    new = etree.Element(f"{{{ns}}}Document", nsmap={"p": ns, "unused": "urn:example:unused"})
    new.extend(list(doc))
    root.replace(doc, new)
    return etree.tostring(root)


def _existing_empty_sgntr(raw: bytes) -> bytes:
    root = etree.fromstring(raw)
    etree.SubElement(root[0], f"{{{HEAD}}}Sgntr")
    return etree.tostring(root)


SHAPES: dict[str, Callable[[], bytes]] = {
    "compact": lambda: pacs008(),
    "pretty": lambda: pacs008(pretty=True),
    "pain.001": lambda: pain001(app_hdr=True),
    "rltd-and-pssbldplct": lambda: _with_rltd_and_flag(pacs008()),
    "awkward-text": lambda: _awkward_text(pacs008()),
    "prefixed-document": lambda: _prefixed_document(pacs008()),
    "existing-empty-sgntr": lambda: _existing_empty_sgntr(pacs008(pretty=True)),
}


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_token_gets_the_same_signed_info_as_from_the_parsed_envelope(
    shape: str, kind: str, software_keys: Callable[[str], SoftwareKey]
) -> None:
    k = software_keys(kind)
    key = SigningKey.from_cert(k.cert)
    envelope, _ = laid_out(SHAPES[shape]())
    given: list[bytes] = []

    def record(signed_info: bytes) -> bytes:
        given.append(signed_info)
        return k.sign_raw(signed_info)

    fast = sign_laid_out(envelope, key, record, key_info_id=b"KeyInfo-1")
    slow = sign_envelope(envelope.unsigned, key, record, key_info_id="KeyInfo-1")
    assert len(given) == 2 and given[0] == given[1]
    for signed in (fast, slow):
        verify_envelope(signed, [k.cert])
    # Canonical bytes are a fixed point: the signed message, parsed again, canonicalises to the bytes digested.
    root = etree.fromstring(fast)
    assert c14n(root[1]) == envelope.document
    hdr_view = copy.deepcopy(root[0])
    sgntr = hdr_view.find("{*}Sgntr")
    assert sgntr is not None and len(sgntr) == 1
    sgntr.remove(sgntr[0])
    assert c14n(hdr_view) == envelope.app_hdr


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_unsigned_envelope_is_the_same_message_and_the_header_is_left_as_it_was(shape: str) -> None:
    raw = SHAPES[shape]()
    before = etree.fromstring(raw)
    envelope, hdr = laid_out(raw)
    assert c14n(hdr) == c14n(before[0])  # the builder's temporary Sgntr is gone again
    unsigned = etree.fromstring(envelope.unsigned)
    assert envelope.unsigned.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<BizMsg ")
    assert etree.QName(unsigned).localname == "BizMsg" and len(unsigned) == 2
    assert c14n(unsigned[1]) == c14n(before[1])
    assert unsigned[0].find("{*}Sgntr") is None  # unsigned: no Sgntr (an empty one is not a signature)
    expected_hdr = copy.deepcopy(before[0])
    for s in expected_hdr.findall("{*}Sgntr"):
        expected_hdr.remove(s)
    assert c14n(unsigned[0]) == c14n(expected_hdr)


def test_a_signed_header_and_elements_without_a_namespace_are_refused(
    software_keys: Callable[[str], SoftwareKey],
) -> None:
    k = software_keys("ec")
    envelope, _ = laid_out(pacs008())
    signed = sign_laid_out(envelope, SigningKey.from_cert(k.cert), k.sign_raw)
    with pytest.raises(SigningError, match="already signed"):
        laid_out(signed)
    root = etree.fromstring(pacs008())
    with pytest.raises(SigningError, match="no namespace"):
        canonical_envelope(etree.Element("Plain"), root[0], root[1])


def test_each_signature_has_its_own_key_info_id(software_keys: Callable[[str], SoftwareKey]) -> None:
    k = software_keys("ec")
    envelope, _ = laid_out(pacs008())
    key = SigningKey.from_cert(k.cert)
    ids = {etree.fromstring(sign_laid_out(envelope, key, k.sign_raw)).find(".//{*}KeyInfo").get("Id") for _ in "ab"}
    assert len(ids) == 2 and all(i and i.startswith("KeyInfo-") for i in ids)
