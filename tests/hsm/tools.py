"""Code we did not write, pointed at the BAH signature layout: signxml (reference resolution adapted), xmlsec1, openssl.

Stock xmlsec1 and signxml read `URI=""` as the whole document and cannot resolve a Reference without URI
(NOTES.md). signxml is adapted in exactly that one place. xmlsec1 cannot verify the three-reference SignedInfo as
a whole, so it recomputes each digest on its own: for every signed part we build a small document whose root is
that part, holding a one-reference template signature (URI="", enveloped-signature then exclusive C14N), let
`xmlsec1 --sign` fill in the DigestValue, and compare. The enveloped transform removes the template again, so the
digest xmlsec1 computes is the digest of the part as it was signed.
"""

from __future__ import annotations

import base64
import copy
import subprocess
import textwrap
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import utils
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

DS = "http://www.w3.org/2000/09/xmldsig#"
EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"

_TEMPLATE = f"""<Signature xmlns="{DS}"><SignedInfo>
<CanonicalizationMethod Algorithm="{EXC}"/>
<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<Reference URI=""><Transforms>
<Transform Algorithm="{DS}enveloped-signature"/><Transform Algorithm="{EXC}"/>
</Transforms><DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/></Reference>
</SignedInfo><SignatureValue/></Signature>"""


class BahVerifier(XMLVerifier):
    """signxml with the BAH reference resolution: '' is the AppHdr, a Reference without URI the Document."""

    def _resolve_reference(self, doc_root, reference, uri_resolver=None):
        uri = reference.get("URI")
        if uri is None:
            return doc_root.find("{*}Document")
        if uri == "":
            return doc_root.find("{*}AppHdr")
        return super()._resolve_reference(doc_root, reference, uri_resolver)  # type: ignore[no-untyped-call]


def signxml_verify(data: bytes, cert: x509.Certificate) -> list[bytes]:
    """Verify with signxml against `cert`; returns the signed bytes of the three references. Raises on failure."""
    results = BahVerifier().verify(data, x509_cert=cert, expect_config=SignatureConfiguration(expect_references=3))
    assert isinstance(results, list)
    return [r.signed_data for r in results if isinstance(r, VerifyResult)]


def xmlsec1_digest(view: etree._Element, work: Path, throwaway_key: Path, *, into: etree._Element | None = None) -> str:
    """The SHA-256 DigestValue xmlsec1 computes for `view` (exclusive C14N, the template signature enveloped).

    `view` is a copy the caller owns; the template goes into `into` (default: `view` itself) and is removed
    again by the enveloped transform, so the digest is that of `view` as given.
    """
    (view if into is None else into).append(etree.fromstring(_TEMPLATE.replace("\n", "")))
    src = work / "xmlsec-view.xml"
    out = work / "xmlsec-view.signed.xml"
    src.write_bytes(etree.tostring(view))
    done = subprocess.run(
        ["xmlsec1", "--sign", "--privkey-pem", str(throwaway_key), "--output", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    value = etree.parse(str(out)).find(f".//{{{DS}}}DigestValue")
    assert value is not None and value.text
    return str(value.text).strip()


def app_hdr_view(hdr: etree._Element) -> tuple[etree._Element, etree._Element]:
    """A copy of a (signed) AppHdr with an emptied Sgntr, and that Sgntr: what the enveloped transform leaves."""
    view = copy.deepcopy(hdr)
    sgntr = view.find("{*}Sgntr")
    assert sgntr is not None
    for child in list(sgntr):
        sgntr.remove(child)  # our ds:Signature has no tail, so nothing else goes with it
    return view, sgntr


def openssl(*args: str, data: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def openssl_verify_signature_value(signed_info_c14n: bytes, value: bytes, cert_pem: Path, work: Path, ec: bool) -> bool:
    """Check a SignatureValue over canonical SignedInfo with `openssl dgst -verify` and the exported certificate."""
    pub = work / "pub.pem"
    pub.write_bytes(openssl("x509", "-in", str(cert_pem), "-noout", "-pubkey"))
    sig = work / "sig.bin"
    if ec:  # XMLDSig carries r||s; OpenSSL wants the DER ECDSA-Sig-Value
        value = utils.encode_dss_signature(int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big"))
    sig.write_bytes(value)
    data = work / "si.bin"
    data.write_bytes(signed_info_c14n)
    done = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(data)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0


def foreign_signed(envelope: bytes, key_pem: Path, cert_pem: Path, work: Path, throwaway_key: Path, ec: bool) -> bytes:
    """A BAH signature assembled without hsm.xmldsig: digests by xmlsec1, SignatureValue by `openssl dgst -sign`.

    It differs from ours in form on purpose: the default namespace instead of `ds:`, the KeyInfo reference first,
    KeyInfo with the certificate only (base64 in 64-character lines), whitespace between the elements.
    """
    root = etree.fromstring(envelope)
    hdr, doc = list(root)
    ns = etree.QName(hdr).namespace
    sgntr = etree.SubElement(hdr, f"{{{ns}}}Sgntr")
    der = x509.load_pem_x509_certificate(cert_pem.read_bytes()).public_bytes(Encoding.DER)
    cert_b64 = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    method = "ecdsa-sha256" if ec else "rsa-sha256"
    signature = etree.fromstring(
        f"""<Signature xmlns="{DS}">
  <SignedInfo>
    <CanonicalizationMethod Algorithm="{EXC}"/>
    <SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#{method}"/>
    <Reference URI="#_ki-other-1">
      <Transforms><Transform Algorithm="{EXC}"/></Transforms>
      <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <DigestValue>KI</DigestValue>
    </Reference>
    <Reference URI="">
      <Transforms>
        <Transform Algorithm="{DS}enveloped-signature"/>
        <Transform Algorithm="{EXC}"/>
      </Transforms>
      <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <DigestValue>HDR</DigestValue>
    </Reference>
    <Reference>
      <Transforms><Transform Algorithm="{EXC}"/></Transforms>
      <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <DigestValue>DOC</DigestValue>
    </Reference>
  </SignedInfo>
  <SignatureValue/>
  <KeyInfo Id="_ki-other-1">
    <X509Data>
      <X509Certificate>
{cert_b64}
      </X509Certificate>
    </X509Data>
  </KeyInfo>
</Signature>"""
    )
    # Digests of the AppHdr (Sgntr still empty: what the enveloped transform leaves) and of the Document.
    hdr_view, hdr_sgntr = app_hdr_view(hdr)
    hdr_digest = xmlsec1_digest(hdr_view, work, throwaway_key, into=hdr_sgntr)
    doc_digest = xmlsec1_digest(copy.deepcopy(doc), work, throwaway_key)
    sgntr.append(signature)
    key_info = signature.find(f"{{{DS}}}KeyInfo")
    assert key_info is not None
    ki_digest = xmlsec1_digest(copy.deepcopy(key_info), work, throwaway_key)
    for value_el in signature.iter(f"{{{DS}}}DigestValue"):
        value_el.text = {"KI": ki_digest, "HDR": hdr_digest, "DOC": doc_digest}[value_el.text or ""]
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    assert signed_info is not None
    si = work / "si.bin"
    si.write_bytes(etree.tostring(signed_info, method="c14n", exclusive=True))
    raw = openssl("dgst", "-sha256", "-sign", str(key_pem), str(si))
    if ec:
        r, s = utils.decode_dss_signature(raw)
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    value_el = signature.find(f"{{{DS}}}SignatureValue")
    assert value_el is not None
    value_el.text = "\n" + "\n".join(textwrap.wrap(base64.b64encode(raw).decode(), 64)) + "\n"
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out
