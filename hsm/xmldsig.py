"""Enveloped XML Signature (W3C XMLDSig) in the head.001 AppHdr/Sgntr: build it around a signing callback, verify it.

Pure code: bytes or trees in, bytes or values out. The private key never comes here; signing goes through a
callback (`SignFn`) that the token side provides, so the same code signs with the HSM and, in tests, with other keys.

Layout (the ISO 20022 BAH convention, see NOTES.md "XML signature in the BAH")
    <AnyRoot><AppHdr>...<Sgntr><ds:Signature>
        <ds:SignedInfo>
          CanonicalizationMethod  exclusive C14N 1.0 (no comments)
          SignatureMethod         rsa-sha256 | ecdsa-sha256
          Reference URI=""        the AppHdr: enveloped-signature transform, then exclusive C14N
          Reference (no URI)      the Document: exclusive C14N
          Reference URI="#<Id>"   the KeyInfo of this signature: exclusive C14N
          every DigestMethod      sha256
        </ds:SignedInfo>
        <ds:SignatureValue/>      RSA: PKCS#1 v1.5; ECDSA: raw r||s, 32 bytes each (XMLDSig 1.1 section 6.4.3)
        <ds:KeyInfo Id="..."><ds:X509Data> X509IssuerSerial + X509Certificate </ds:X509Data></ds:KeyInfo>
    </ds:Signature></Sgntr>...</AppHdr><Document>...</Document></AnyRoot>

Rules: the enveloped transform removes only the ds:Signature (the empty Sgntr stays in the AppHdr digest);
exclusive C14N keeps the signature valid when AppHdr and Document move to another envelope; the signed bytes are
never pretty-printed afterwards. The verifier accepts exactly this layout (three references, these algorithms) and
nothing looser: a reference it does not recognise is an error, not something to skip.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from hsm.dn import same_name
from hsm.errors import SignatureInvalid, SigningError
from switchd.iso.xml import HEAD_NS_PREFIX, hardened_parser, local_name, namespace_of

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EC_NS = EXC_C14N  # InclusiveNamespaces lives in the exc-c14n namespace
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"

SignatureKind = Literal["rsa", "ec"]
SIGNATURE_METHODS: dict[SignatureKind, str] = {"rsa": RSA_SHA256, "ec": ECDSA_SHA256}
# Signs the canonical SignedInfo; returns the SignatureValue bytes (RSA PKCS#1 v1.5 with SHA-256, or ECDSA P-256
# with SHA-256 as raw r||s).
SignFn = Callable[[bytes], bytes]

_DS = f"{{{DS_NS}}}"
_DER = Encoding.DER


def parse(data: bytes) -> etree._Element:
    """Parse an envelope with the hardened parser. Raises ValueError (not XML, or a DOCTYPE)."""
    if b"<!DOCTYPE" in data:
        raise ValueError("DOCTYPE is not allowed")
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ValueError("DOCTYPE is not allowed")
    return root


def split(root: etree._Element) -> tuple[etree._Element, etree._Element] | str:
    """(AppHdr, Document) of an envelope `<AnyRoot><AppHdr/><Document/></AnyRoot>`, or why it is not one."""
    children = [c for c in root if isinstance(c.tag, str)]
    names = [local_name(c) for c in children]
    if names != ["AppHdr", "Document"]:
        return f"expected <{local_name(root)}> to hold AppHdr then Document, it holds {', '.join(names) or 'nothing'}"
    hdr, doc = children
    if not namespace_of(hdr).startswith(HEAD_NS_PREFIX):
        return f"AppHdr namespace {namespace_of(hdr)!r} is not head.001"
    return hdr, doc


def c14n(el: etree._Element, inclusive_prefixes: Sequence[str] | None = None) -> bytes:
    """Exclusive XML Canonicalization 1.0 without comments of `el` and its descendants."""
    out: bytes = etree.tostring(
        el, method="c14n", exclusive=True, with_comments=False, inclusive_ns_prefixes=inclusive_prefixes
    )
    return out


def digest_b64(data: bytes) -> bytes:
    return base64.b64encode(hashlib.sha256(data).digest())


def new_key_info_id() -> bytes:
    # 128 random bits, as uuid4().hex spells them (uuid4 costs ~5 us a call)
    return b"KeyInfo-" + os.urandom(16).hex().encode()


@contextmanager
def _without(el: etree._Element) -> Iterator[None]:
    """Detach `el` for the duration (the enveloped-signature transform), keeping its tail text in the tree.

    lxml's remove() takes the tail text with the element, but the transform removes only the element node: the
    text after it is still part of what was signed. Everything is put back afterwards.
    """
    parent = el.getparent()
    assert parent is not None
    index = parent.index(el)
    tail = el.tail
    prev = el.getprevious()
    saved = prev.tail if prev is not None else parent.text
    if tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)
    try:
        yield
    finally:
        if prev is not None:
            prev.tail = saved
        else:
            parent.text = saved
        el.tail = tail
        parent.insert(index, el)


# --- signing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """What the signature says about the key: its kind and certificate. Build once per key, reuse per message."""

    kind: SignatureKind
    cert: x509.Certificate
    cert_b64: str
    issuer: str
    serial: int
    template: etree._Element = field(repr=False, compare=False)  # the ds:Signature skeleton, see _template
    # Exclusive C14N of the template's SignedInfo, KeyInfo and whole Signature with _MARKS where the per-message
    # values go. Exclusive C14N renders a subtree the same wherever it sits (only the ds namespace it uses), and the
    # values (base64, hex) need no escaping: filling the marks in gives what c14n() of the filled-in tree gives,
    # for a small part of the cost. The signature tests (xmlsec1, signxml, our verifier) hold it to that.
    signed_info_c14n: _Filled = field(repr=False, compare=False)
    key_info_c14n: _Filled = field(repr=False, compare=False)
    signature_c14n: _Filled = field(repr=False, compare=False)  # SignatureValue marked too (hsm.canonical)

    @classmethod
    def from_cert(cls, cert: x509.Certificate) -> SigningKey:
        pub = cert.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            kind: SignatureKind = "rsa"
        elif isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1):
            kind = "ec"
        else:
            raise SigningError(f"certificate {cert.subject.rfc4514_string()} holds neither an RSA nor a P-256 key")
        b64 = base64.b64encode(cert.public_bytes(_DER)).decode()
        issuer = cert.issuer.rfc4514_string()
        template = _template(kind, b64, issuer, cert.serial_number)
        marked = copy.deepcopy(template)
        _fill(marked, *(m.decode() for m in _MARKS[:4]))
        marked[1].text = _MARKS[4].decode()
        return cls(
            kind,
            cert,
            b64,
            issuer,
            cert.serial_number,
            template,
            _Filled.of(c14n(marked[0])),
            _Filled.of(c14n(marked[2])),
            _Filled.of(c14n(marked)),
        )

    def signed_info(self, hdr_digest: bytes, doc_digest: bytes, key_info_id: bytes) -> tuple[bytes, bytes]:
        """The canonical SignedInfo for these digests (base64) and KeyInfo Id, and the KeyInfo digest it names."""
        key_info_digest = digest_b64(self.key_info_c14n.fill((b"", b"", b"", key_info_id, b"")))
        values = (hdr_digest, doc_digest, key_info_digest, key_info_id, b"")
        return self.signed_info_c14n.fill(values), key_info_digest

    def signature(
        self, hdr_digest: bytes, doc_digest: bytes, key_info_digest: bytes, key_info_id: bytes, value_b64: bytes
    ) -> bytes:
        """The whole ds:Signature element in exclusive C14N form, with these values filled in."""
        return self.signature_c14n.fill((hdr_digest, doc_digest, key_info_digest, key_info_id, value_b64))


# Stand-ins, in the canonical templates, for the AppHdr, Document and KeyInfo digests, the KeyInfo Id and the
# SignatureValue (the order of the values _Filled.fill takes).
_MARKS = (b"@hdr-digest@", b"@doc-digest@", b"@key-info-digest@", b"@key-info-id@", b"@signature-value@")
_MARK_SPLIT = re.compile(b"(" + b"|".join(re.escape(m) for m in _MARKS) + b")")


@dataclass(frozen=True)
class _Filled:
    """A byte template with its marks turned into %s: filling it is one formatting call in C (ten bytes.replace
    passes cost ~15 us, a join over the pieces ~8 us)."""

    format: bytes
    slots: tuple[int, ...]  # which value goes into each %s, in order

    @classmethod
    def of(cls, marked: bytes) -> _Filled:
        pieces = _MARK_SPLIT.split(marked)
        literals = [p.replace(b"%", b"%%") for p in pieces[0::2]]
        return cls(b"%s".join(literals), tuple(_MARKS.index(m) for m in pieces[1::2]))

    def fill(self, values: tuple[bytes, ...]) -> bytes:
        return self.format % tuple([values[i] for i in self.slots])


def _fill(signature: etree._Element, hdr_digest: str, doc_digest: str, key_info_digest: str, key_info_id: str) -> None:
    """Put the per-message values into a copy of the template (positions as _template builds them)."""
    signed_info, key_info = signature[0], signature[2]
    hdr_ref, doc_ref, key_info_ref = signed_info[2], signed_info[3], signed_info[4]
    hdr_ref[2].text = hdr_digest
    doc_ref[2].text = doc_digest
    key_info_ref[2].text = key_info_digest
    key_info_ref.set("URI", f"#{key_info_id}")
    key_info.set("Id", key_info_id)


def _template(kind: SignatureKind, cert_b64: str, issuer: str, serial: int) -> etree._Element:
    """ds:Signature with everything but the digests, the KeyInfo Id (and its reference) and the SignatureValue."""
    signature = etree.Element(_DS + "Signature", nsmap={"ds": DS_NS})
    signed_info = _sub(signature, "SignedInfo")
    _sub(signed_info, "CanonicalizationMethod", Algorithm=EXC_C14N)
    _sub(signed_info, "SignatureMethod", Algorithm=SIGNATURE_METHODS[kind])
    _reference(signed_info, "", (ENVELOPED, EXC_C14N))
    _reference(signed_info, None, (EXC_C14N,))
    _reference(signed_info, "#", (EXC_C14N,))
    _sub(signature, "SignatureValue")
    key_info = _sub(signature, "KeyInfo", Id="")
    x509_data = _sub(key_info, "X509Data")
    issuer_serial = _sub(x509_data, "X509IssuerSerial")
    _sub(issuer_serial, "X509IssuerName", issuer)
    _sub(issuer_serial, "X509SerialNumber", str(serial))
    _sub(x509_data, "X509Certificate", cert_b64)
    return signature


def _sub(parent: etree._Element, name: str, text: str | None = None, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, _DS + name, attrib)
    if text is not None:
        el.text = text
    return el


def _transforms(ref: etree._Element, *algorithms: str) -> None:
    transforms = _sub(ref, "Transforms")
    for alg in algorithms:
        _sub(transforms, "Transform", Algorithm=alg)


def _reference(signed_info: etree._Element, uri: str | None, transforms: Sequence[str]) -> etree._Element:
    ref = _sub(signed_info, "Reference") if uri is None else _sub(signed_info, "Reference", URI=uri)
    _transforms(ref, *transforms)
    _sub(ref, "DigestMethod", Algorithm=SHA256)
    return _sub(ref, "DigestValue")


def sgntr_of(app_hdr: etree._Element) -> etree._Element:
    """The AppHdr's Sgntr, inserted empty where head.001.001.02 puts it (after Prty, before any Rltd) if missing."""
    q = app_hdr.tag[: app_hdr.tag.index("}") + 1]
    # iterchildren(tag) filters in C; find() goes through ElementPath in Python (~5 us a call).
    sgntr = next(app_hdr.iterchildren(q + "Sgntr"), None)
    if sgntr is not None:
        return sgntr
    # Made in place (SubElement), then moved if need be: an element made outside the tree costs a namespace
    # reconciliation when it is attached.
    sgntr = etree.SubElement(app_hdr, q + "Sgntr")
    related = next(app_hdr.iterchildren(q + "Rltd"), None)
    if related is not None:
        related.addprevious(sgntr)
    return sgntr


def refuse_signed(sgntr: etree._Element) -> None:
    """Raise SigningError if the Sgntr holds an element (a signature already)."""
    if any(isinstance(c.tag, str) for c in sgntr):
        raise SigningError("the AppHdr is already signed (Sgntr is not empty)")


def sign_tree(root: etree._Element, key: SigningKey, sign: SignFn, *, key_info_id: str | None = None) -> None:
    """Sign the envelope `root` in place: an enveloped signature in AppHdr/Sgntr.

    Raises SigningError if `root` is not AppHdr + Document or the AppHdr is already signed; whatever `sign`
    raises (e.g. HsmUnavailable) passes through, leaving the tree with an empty Sgntr.
    """
    parts = split(root)
    if isinstance(parts, str):
        raise SigningError(parts)
    app_hdr, document = parts
    sgntr = sgntr_of(app_hdr)
    refuse_signed(sgntr)

    # Digests first: the AppHdr as it is now (empty Sgntr) is exactly what the enveloped transform will leave.
    hdr_digest = digest_b64(c14n(app_hdr))
    doc_digest = digest_b64(c14n(document))

    kid = key_info_id.encode() if key_info_id else new_key_info_id()
    signed_info, key_info_digest = key.signed_info(hdr_digest, doc_digest, kid)
    # A copy of the key's prepared skeleton: ~5x cheaper than building two dozen elements per message.
    signature = copy.deepcopy(key.template)
    _fill(signature, hdr_digest.decode(), doc_digest.decode(), key_info_digest.decode(), kid.decode())
    sgntr.append(signature)
    try:
        signature[1].text = base64.b64encode(sign(signed_info)).decode()
    except BaseException:
        sgntr.remove(signature)
        raise


def sign_envelope(data: bytes, key: SigningKey, sign: SignFn, *, key_info_id: str | None = None) -> bytes:
    """`sign_tree` on bytes. Raises SigningError for input that is not an envelope."""
    try:
        root = parse(data)
    except ValueError as exc:
        raise SigningError(str(exc)) from None
    sign_tree(root, key, sign, key_info_id=key_info_id)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


# --- verifying ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """A signature that verified: the certificate it verified against and the signature method."""

    cert: x509.Certificate
    algorithm: str  # "rsa-sha256" | "ecdsa-sha256"

    @property
    def cert_sha256(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()


def verify_envelope(data: bytes, certs: Sequence[x509.Certificate], *, at: datetime | None = None) -> Verified:
    """Verify the BAH signature of `data` against one of `certs` (see `verify_tree`)."""
    try:
        root = parse(data)
    except ValueError as exc:
        raise SignatureInvalid(str(exc)) from None
    return verify_tree(root, certs, at=at)


def verify_tree(root: etree._Element, certs: Sequence[x509.Certificate], *, at: datetime | None = None) -> Verified:
    """Verify the signature in AppHdr/Sgntr against one of `certs`; `at`: also require the certificate valid then.

    Raises SignatureInvalid whose `reference` says what failed: "Signature" (missing or not this layout),
    "KeyInfo" (a certificate we do not trust, or KeyInfo changed), "SignatureValue", "AppHdr" or "Document"
    (changed after signing). The tree is left as it was.
    """
    parts = split(root)
    if isinstance(parts, str):
        raise SignatureInvalid(parts, "Signature")
    app_hdr, document = parts
    sgntr = next((c for c in app_hdr if isinstance(c.tag, str) and local_name(c) == "Sgntr"), None)
    if sgntr is None:
        raise SignatureInvalid("the message is not signed: the AppHdr has no Sgntr", "Signature", "missing")
    inside = [c for c in sgntr if isinstance(c.tag, str)]
    if len(inside) != 1 or inside[0].tag != _DS + "Signature":
        raise SignatureInvalid("Sgntr must hold exactly one ds:Signature", "Signature", "missing")
    signature = inside[0]
    layout = _Layout.read(signature)

    candidates = _candidates(layout, certs)
    if len(candidates) == 1:
        cert = candidates[0]
        _check_validity(cert, at)
        _check_signature_value(layout, cert)
    else:
        # KeyInfo names no certificate: the one whose key verifies the SignatureValue is the signer's.
        cert = _verifying_cert(layout, candidates)
        _check_validity(cert, at)

    with _without(signature):
        hdr_c14n = c14n(app_hdr, layout.prefixes["AppHdr"])
    computed = {
        "AppHdr": hdr_c14n,
        "Document": c14n(document, layout.prefixes["Document"]),
        "KeyInfo": c14n(layout.key_info, layout.prefixes["KeyInfo"]),
    }
    for name, canonical in computed.items():
        if digest_b64(canonical).decode() != layout.digests[name]:
            raise SignatureInvalid(f"the {name} digest does not match: the {name} was changed after signing", name)
    return Verified(cert, "rsa-sha256" if layout.method == RSA_SHA256 else "ecdsa-sha256")


@dataclass
class _Layout:
    """What a ds:Signature says, checked against the one layout we accept."""

    signed_info: etree._Element
    si_prefixes: list[str] | None
    method: str
    digests: dict[str, str]  # "AppHdr" | "Document" | "KeyInfo" -> base64 digest (whitespace removed)
    prefixes: dict[str, list[str] | None]  # InclusiveNamespaces PrefixList per reference
    value: bytes
    key_info: etree._Element

    @cached_property
    def signed_info_c14n(self) -> bytes:
        """What the SignatureValue signs; computed once, however many trusted keys are tried against it."""
        return c14n(self.signed_info, self.si_prefixes)

    @classmethod
    def read(cls, signature: etree._Element) -> _Layout:
        children = [c for c in signature if isinstance(c.tag, str)]
        names = [c.tag for c in children]
        if names[:2] != [_DS + "SignedInfo", _DS + "SignatureValue"]:
            raise SignatureInvalid("ds:Signature must start with SignedInfo, SignatureValue", "Signature")
        signed_info, value_el = children[0], children[1]
        key_info = next((c for c in children[2:] if c.tag == _DS + "KeyInfo"), None)
        if key_info is None:
            raise SignatureInvalid("ds:Signature has no KeyInfo", "Signature")
        si = [c for c in signed_info if isinstance(c.tag, str)]
        if len(si) < 2 or si[0].tag != _DS + "CanonicalizationMethod" or si[1].tag != _DS + "SignatureMethod":
            raise SignatureInvalid("SignedInfo must start with CanonicalizationMethod, SignatureMethod", "Signature")
        if si[0].get("Algorithm") != EXC_C14N:
            raise SignatureInvalid(f"canonicalization {si[0].get('Algorithm')!r} is not exclusive C14N", "Signature")
        method = si[1].get("Algorithm") or ""
        if method not in (RSA_SHA256, ECDSA_SHA256):
            raise SignatureInvalid(f"signature method {method!r} is not rsa-sha256 or ecdsa-sha256", "Signature")
        digests: dict[str, str] = {}
        prefixes: dict[str, list[str] | None] = {}
        for ref in si[2:]:
            if ref.tag != _DS + "Reference":
                raise SignatureInvalid(f"unexpected {local_name(ref)} in SignedInfo", "Signature")
            name, expected = _classify(ref, key_info)
            if name in digests:
                raise SignatureInvalid(f"two references to the {name}", "Signature")
            transforms, prefix_list = _read_transforms(ref)
            if transforms != expected:
                raise SignatureInvalid(f"the {name} reference has transforms {transforms}, expected {expected}", name)
            dm = ref.find(_DS + "DigestMethod")
            dv = ref.find(_DS + "DigestValue")
            if dm is None or dm.get("Algorithm") != SHA256 or dv is None:
                raise SignatureInvalid(f"the {name} reference must use SHA-256", name)
            digests[name] = "".join((dv.text or "").split())
            prefixes[name] = prefix_list
        missing = [n for n in ("AppHdr", "Document", "KeyInfo") if n not in digests]
        if missing:
            raise SignatureInvalid(f"SignedInfo has no reference to the {', '.join(missing)}", missing[0])
        try:
            value = base64.b64decode("".join((value_el.text or "").split()), validate=True)
        except ValueError:
            raise SignatureInvalid("SignatureValue is not base64", "SignatureValue") from None
        return cls(signed_info, _inclusive_prefixes(si[0]), method, digests, prefixes, value, key_info)


def _classify(ref: etree._Element, key_info: etree._Element) -> tuple[str, list[str]]:
    uri = ref.get("URI")
    if uri is None:
        return "Document", [EXC_C14N]
    if uri == "":
        return "AppHdr", [ENVELOPED, EXC_C14N]
    # Only this signature's own KeyInfo: an Id elsewhere in the message must not stand in for it.
    if uri.startswith("#") and key_info.get("Id") == uri[1:]:
        return "KeyInfo", [EXC_C14N]
    raise SignatureInvalid(f"Reference URI {uri!r} is neither '', absent, nor this signature's KeyInfo", "Signature")


def _inclusive_prefixes(method_or_transform: etree._Element) -> list[str] | None:
    inc = method_or_transform.find(f"{{{EC_NS}}}InclusiveNamespaces")
    if inc is None:
        return None
    return (inc.get("PrefixList") or "").split() or None


def _read_transforms(ref: etree._Element) -> tuple[list[str], list[str] | None]:
    node = ref.find(_DS + "Transforms")
    if node is None:
        return [], None
    algorithms: list[str] = []
    prefix_list = None
    for t in node:
        if not isinstance(t.tag, str):
            continue
        alg = t.get("Algorithm") or ""
        algorithms.append(alg)
        if alg == EXC_C14N:
            prefix_list = _inclusive_prefixes(t)
    return algorithms, prefix_list


def _candidates(layout: _Layout, certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The trusted certificates KeyInfo may mean: the one it names (by the certificate itself, else by issuer and
    serial), or every trusted one when it names none. Raises SignatureInvalid (untrusted) when it names another."""
    if not certs:
        raise SignatureInvalid("no certificate to verify against", "KeyInfo", "untrusted")
    data = layout.key_info.find(_DS + "X509Data")
    if data is not None:
        embedded = data.find(_DS + "X509Certificate")
        if embedded is not None:
            try:
                der = base64.b64decode("".join((embedded.text or "").split()), validate=True)
            except ValueError:
                raise SignatureInvalid("KeyInfo X509Certificate is not base64", "KeyInfo") from None
            for cert in certs:
                if cert.public_bytes(_DER) == der:
                    return [cert]
            raise SignatureInvalid(
                "signed with a certificate that is not the one we trust for this sender", "KeyInfo", "untrusted"
            )
        serial_el = data.find(f"{_DS}X509IssuerSerial/{_DS}X509SerialNumber")
        issuer_el = data.find(f"{_DS}X509IssuerSerial/{_DS}X509IssuerName")
        if serial_el is not None and issuer_el is not None:
            # Names compare parsed (hsm.dn): tools write the same issuer with other spacing, case or escapes. Only
            # a trusted certificate can be picked, and its key must still verify the SignatureValue.
            serial = (serial_el.text or "").strip()
            for cert in certs:
                if str(cert.serial_number) == serial and same_name(cert.issuer, issuer_el.text or ""):
                    return [cert]
            raise SignatureInvalid(
                "signed with a key (issuer and serial) we do not trust for this sender", "KeyInfo", "untrusted"
            )
    return list(certs)


def _check_validity(cert: x509.Certificate, at: datetime | None) -> None:
    if at is not None and not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise SignatureInvalid(
            f"certificate {cert.subject.rfc4514_string()} (serial {cert.serial_number}) is not valid at {at}",
            "KeyInfo",
            "expired",
        )


def _verifying_cert(layout: _Layout, certs: Sequence[x509.Certificate]) -> x509.Certificate:
    """The first of `certs` whose key verifies the SignatureValue. Raises SignatureInvalid if none does."""
    for cert in certs:
        try:
            _check_signature_value(layout, cert)
        except SignatureInvalid:
            continue  # another key, or another kind of key: try the next one
        return cert
    raise SignatureInvalid(
        f"KeyInfo names no certificate and the SignatureValue verifies with none of the {len(certs)} trusted "
        "certificates (SignedInfo changed or another key signed)",
        "SignatureValue",
    )


def _check_signature_value(layout: _Layout, cert: x509.Certificate) -> None:
    data = layout.signed_info_c14n
    pub = cert.public_key()
    try:
        if layout.method == RSA_SHA256:
            if not isinstance(pub, rsa.RSAPublicKey):
                raise SignatureInvalid("rsa-sha256 signature but the certificate holds no RSA key", "KeyInfo")
            pub.verify(layout.value, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            if not isinstance(pub, ec.EllipticCurvePublicKey):
                raise SignatureInvalid("ecdsa-sha256 signature but the certificate holds no EC key", "KeyInfo")
            size = (pub.curve.key_size + 7) // 8
            if len(layout.value) != 2 * size:
                raise SignatureInvalid("ECDSA SignatureValue is not r||s of the curve's size", "SignatureValue")
            r = int.from_bytes(layout.value[:size], "big")
            s = int.from_bytes(layout.value[size:], "big")
            pub.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureInvalid(
            "SignatureValue does not verify with the certificate's key (SignedInfo changed or another key signed)",
            "SignatureValue",
        ) from None


def raw_to_der_ecdsa(raw: bytes) -> bytes:
    """r||s (PKCS#11 CKM_ECDSA, XMLDSig) -> DER ECDSA-Sig-Value (X.509, cryptography)."""
    half = len(raw) // 2
    return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
