"""XMLDSig in AppHdr/Sgntr with software keys: layout, schema validity, tampering, and other tools' signatures."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from hsm import xmldsig
from hsm.errors import SignatureInvalid, SigningError
from hsm.xmldsig import DS_NS, SigningKey, sign_envelope, verify_envelope
from tests.builders import SCHEMAS, pacs008, pain001, project_schema
from tests.hsm.conftest import SoftwareKey, laid_out, make_software_key, sign_laid_out
from tests.hsm.tools import (
    app_hdr_view,
    foreign_signed,
    openssl,
    openssl_verify_signature_value,
    signxml_verify,
    xmlsec1_digest,
)

DS = f"{{{DS_NS}}}"
KINDS = ["rsa", "ec"]


Sign = Callable[[bytes, SoftwareKey], bytes]


def _sign(data: bytes, k: SoftwareKey) -> bytes:
    return sign_envelope(data, SigningKey.from_cert(k.cert), k.sign_raw)


def _sign_canonical(data: bytes, k: SoftwareKey) -> bytes:
    """The daemon's way: the envelope laid out by hsm.canonical from its parts, signed without being parsed."""
    return sign_laid_out(laid_out(data)[0], SigningKey.from_cert(k.cert), k.sign_raw)


@pytest.fixture(params=["tree", "canonical"])
def sign(request: pytest.FixtureRequest) -> Sign:
    """Both ways of signing must give signatures every check below accepts."""
    return _sign if request.param == "tree" else _sign_canonical


@pytest.fixture(scope="session")
def throwaway_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key xmlsec1 signs its digest-computing views with (only the DigestValue of those is used)."""
    path = tmp_path_factory.mktemp("xmlsec") / "throwaway.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_layout_three_references_exclusive_c14n_sha256(
    kind: str, software_keys: Callable[[str], SoftwareKey], sign: Sign
) -> None:
    k = software_keys(kind)
    root = etree.fromstring(sign(pacs008(), k))
    hdr, _ = list(root)
    sgntr = hdr[-1]
    assert etree.QName(sgntr).localname == "Sgntr"
    (signature,) = list(sgntr)
    assert signature.tag == DS + "Signature"
    si = signature.find(DS + "SignedInfo")
    assert si is not None
    assert si.find(DS + "CanonicalizationMethod").get("Algorithm") == xmldsig.EXC_C14N
    method = si.find(DS + "SignatureMethod").get("Algorithm")
    assert method == (xmldsig.RSA_SHA256 if kind == "rsa" else xmldsig.ECDSA_SHA256)
    refs = si.findall(DS + "Reference")
    key_info = signature.find(DS + "KeyInfo")
    assert key_info is not None and key_info.get("Id")
    assert [r.get("URI") for r in refs] == ["", None, f"#{key_info.get('Id')}"]
    transforms = [[t.get("Algorithm") for t in r.iter(DS + "Transform")] for r in refs]
    assert transforms == [[xmldsig.ENVELOPED, xmldsig.EXC_C14N], [xmldsig.EXC_C14N], [xmldsig.EXC_C14N]]
    assert {r.find(DS + "DigestMethod").get("Algorithm") for r in refs} == {xmldsig.SHA256}
    cert_b64 = key_info.findtext(f"{DS}X509Data/{DS}X509Certificate")
    assert cert_b64 is not None and base64.b64decode(cert_b64) == k.cert.public_bytes(xmldsig._DER)
    serial = key_info.findtext(f"{DS}X509Data/{DS}X509IssuerSerial/{DS}X509SerialNumber")
    assert serial == str(k.cert.serial_number)
    if kind == "ec":  # XMLDSig ECDSA: raw r||s, 32 bytes each for P-256, not DER
        assert len(base64.b64decode(signature.findtext(DS + "SignatureValue") or "")) == 64


@pytest.mark.parametrize("kind", KINDS)
def test_signed_envelope_still_valid_against_head_and_document_schemas(
    kind: str, software_keys: Callable[[str], SoftwareKey], sign: Sign
) -> None:
    signed = sign(pacs008(pretty=True), software_keys(kind))
    hdr, doc = list(etree.fromstring(signed))
    head = project_schema("head.001.001.02")
    assert head.validate(etree.ElementTree(copy.deepcopy(hdr))), head.error_log
    pacs = project_schema("pacs.008.001.08")
    assert pacs.validate(etree.ElementTree(copy.deepcopy(doc))), pacs.error_log


def test_sgntr_goes_after_pssbldplct_and_before_rltd(software_keys: Callable[[str], SoftwareKey], sign: Sign) -> None:
    root = etree.fromstring(pain001(app_hdr=True))
    hdr = root[0]
    ns = etree.QName(hdr).namespace
    etree.SubElement(hdr, f"{{{ns}}}PssblDplct").text = "true"
    related = copy.deepcopy(hdr)  # a Rltd is a whole BusinessApplicationHeader5: Fr, To, BizMsgIdr, MsgDefIdr, CreDt
    related.tag = f"{{{ns}}}Rltd"
    related.remove(related[-1])
    hdr.append(related)
    signed = sign(etree.tostring(root), software_keys("rsa"))
    names = [etree.QName(c).localname for c in etree.fromstring(signed)[0]]
    assert names[-3:] == ["PssblDplct", "Sgntr", "Rltd"]
    head = project_schema("head.001.001.02")
    assert head.validate(etree.ElementTree(copy.deepcopy(etree.fromstring(signed)[0]))), head.error_log
    verify_envelope(signed, [software_keys("rsa").cert])


def test_existing_empty_sgntr_is_used_and_a_signed_header_is_refused(
    software_keys: Callable[[str], SoftwareKey],
) -> None:
    k = software_keys("rsa")
    root = etree.fromstring(pacs008())
    etree.SubElement(root[0], f"{{{etree.QName(root[0]).namespace}}}Sgntr")
    signed = _sign(etree.tostring(root), k)
    assert len(etree.fromstring(signed)[0].findall("{*}Sgntr")) == 1
    verify_envelope(signed, [k.cert])
    with pytest.raises(SigningError, match="already signed"):
        _sign(signed, k)
    with pytest.raises(SigningError, match="AppHdr then Document"):
        _sign(pacs008(app_hdr=False), k)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "old, new, part",
    [
        (b"Alice Debtor", b"Alice Debtoq", "Document"),
        (b"<BizMsgIdr>MSG-1<", b"<BizMsgIdr>MSG-2<", "AppHdr"),
        (b"<ds:X509SerialNumber>", b"<ds:X509SerialNumber>9", "KeyInfo"),
        (b"<ds:X509IssuerName>O", b"<ds:X509IssuerName>C=US,O", "KeyInfo"),
    ],
)
def test_one_changed_character_fails_and_names_the_part(
    kind: str, old: bytes, new: bytes, part: str, software_keys: Callable[[str], SoftwareKey], sign: Sign
) -> None:
    k = software_keys(kind)
    signed = sign(pacs008(), k)
    verify_envelope(signed, [k.cert])
    tampered = signed.replace(old, new, 1)
    assert tampered != signed
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(tampered, [k.cert])
    assert exc.value.reference == part
    with pytest.raises(Exception, match=r"[Dd]igest"):  # signxml agrees, independently
        signxml_verify(tampered, k.cert)


def test_changed_signature_value_or_digest_value_fails(software_keys: Callable[[str], SoftwareKey], sign: Sign) -> None:
    k = software_keys("rsa")
    signed = sign(pacs008(), k)
    root = etree.fromstring(signed)
    value = root.find(f".//{DS}SignatureValue")
    assert value is not None and value.text
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(etree.tostring(root), [k.cert])
    assert exc.value.reference == "SignatureValue"
    # A DigestValue edited to match a changed Document: SignedInfo no longer matches the SignatureValue.
    root = etree.fromstring(signed)
    digest = root.find(f".//{DS}Reference[2]/{DS}DigestValue")
    assert digest is not None
    digest.text = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(etree.tostring(root), [k.cert])
    assert exc.value.reference == "SignatureValue"


def test_untrusted_certificate_and_unsigned_message_are_refused(
    software_keys: Callable[[str], SoftwareKey], tmp_path: Path, sign: Sign
) -> None:
    k = software_keys("rsa")
    other = make_software_key(tmp_path, "rsa", cn="Somebody Else")
    signed = sign(pacs008(), k)
    with pytest.raises(SignatureInvalid, match="not the one we trust") as exc:
        verify_envelope(signed, [other.cert])
    assert exc.value.reference == "KeyInfo"
    with pytest.raises(SignatureInvalid, match="not signed"):
        verify_envelope(pacs008(), [k.cert])
    # Self-signed by the attacker with our certificate's KeyInfo swapped for theirs: refused by trust, not digest.
    forged = sign(pacs008(), other)
    with pytest.raises(SignatureInvalid, match="not the one we trust"):
        verify_envelope(forged, [k.cert])


def test_signature_survives_a_move_to_another_envelope(software_keys: Callable[[str], SoftwareKey], sign: Sign) -> None:
    k = software_keys("ec")
    root = etree.fromstring(sign(pacs008(pretty=True), k))
    other = etree.Element("{urn:example:saa}DataPDU", nsmap={"Saa": "urn:example:saa"})
    body = etree.SubElement(other, "{urn:example:saa}Body")
    for part in list(root):
        body.append(part)
    moved = etree.Element("{urn:other}Wrapper", nsmap={None: "urn:other"})
    for part in list(body):
        moved.append(part)
    verify_envelope(etree.tostring(moved), [k.cert])


@pytest.mark.parametrize("kind", KINDS)
def test_signxml_verifies_our_signature(kind: str, software_keys: Callable[[str], SoftwareKey], sign: Sign) -> None:
    k = software_keys(kind)
    signed = sign(pacs008(pretty=True), k)
    hdr_bytes, doc_bytes, key_info_bytes = signxml_verify(signed, k.cert)
    assert hdr_bytes.startswith(b"<AppHdr") and b"<Sgntr></Sgntr>" in hdr_bytes
    assert doc_bytes.startswith(b"<Document") and b"Alice Debtor" in doc_bytes
    assert key_info_bytes.startswith(b"<ds:KeyInfo")


@pytest.mark.parametrize("kind", KINDS)
def test_xmlsec1_and_openssl_check_each_part(
    kind: str, software_keys: Callable[[str], SoftwareKey], throwaway_key: Path, tmp_path: Path, sign: Sign
) -> None:
    """xmlsec1 recomputes the three digests, openssl checks the SignatureValue with the exported certificate."""
    k = software_keys(kind)
    root = etree.fromstring(sign(pacs008(pretty=True), k))
    hdr, doc = list(root)
    signature = hdr.find(f"{{*}}Sgntr/{DS}Signature")
    assert signature is not None
    digests = [r.findtext(DS + "DigestValue") for r in signature.iter(DS + "Reference")]
    view, sgntr = app_hdr_view(hdr)
    assert xmlsec1_digest(view, tmp_path, throwaway_key, into=sgntr) == digests[0]
    assert xmlsec1_digest(copy.deepcopy(doc), tmp_path, throwaway_key) == digests[1]
    key_info = signature.find(DS + "KeyInfo")
    assert key_info is not None
    assert xmlsec1_digest(copy.deepcopy(key_info), tmp_path, throwaway_key) == digests[2]

    signed_info = signature.find(DS + "SignedInfo")
    assert signed_info is not None
    si_c14n = etree.tostring(signed_info, method="c14n", exclusive=True)
    value = base64.b64decode(signature.findtext(DS + "SignatureValue") or "")
    assert openssl_verify_signature_value(si_c14n, value, k.cert_pem, tmp_path, ec=kind == "ec")
    # and the check can fail: a SignedInfo with one character changed does not verify
    assert not openssl_verify_signature_value(
        si_c14n.replace(b"sha256", b"sha257", 1), value, k.cert_pem, tmp_path, ec=kind == "ec"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_signature_made_by_other_tools_verifies(
    kind: str, throwaway_key: Path, tmp_path: Path, software_keys: Callable[[str], SoftwareKey]
) -> None:
    """Key and certificate made by openssl, digests by xmlsec1, SignatureValue by openssl: not our code."""
    key_pem, cert_pem = tmp_path / "k.pem", tmp_path / "c.pem"
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl(
        "req", "-x509", *newkey, "-nodes", "-keyout", str(key_pem), "-out", str(cert_pem), "-days", "2",
        "-subj", "/CN=Other Bank/O=Elsewhere",
    )  # fmt: skip
    signed = foreign_signed(pacs008(pretty=True), key_pem, cert_pem, tmp_path, throwaway_key, ec=kind == "ec")
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    signxml_verify(signed, cert)  # the assembled message is right by signxml's reading too
    verified = verify_envelope(signed, [cert])
    assert verified.algorithm == ("rsa-sha256" if kind == "rsa" else "ecdsa-sha256")
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(signed.replace(b"Bob Creditor", b"Bob Creditoq"), [cert])
    assert exc.value.reference == "Document"
    # Trusting a different certificate refuses it.
    with pytest.raises(SignatureInvalid):
        verify_envelope(signed, [software_keys(kind).cert])


def test_schema_folder_has_head_001_001_02() -> None:
    assert (SCHEMAS / "head.001.001.02.xsd").is_file()
