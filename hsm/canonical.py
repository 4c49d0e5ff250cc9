"""Envelopes written so that signing needs no XML work: AppHdr and Document in their exclusive C14N form.

The signature digests the exclusive C14N of the AppHdr (with an empty Sgntr) and of the Document. Canonical XML is
a fixed point (parse it again, canonicalise it again: the same bytes), and exclusive C14N renders a subtree the same
wherever it sits. So an envelope whose AppHdr and Document are *written* as their canonical bytes can be digested
as byte ranges and signed by splicing the ds:Signature into the Sgntr: no parse, no C14N pass and no serialisation
in the signer, where they cost more than a P-256 signature on the token (bench/sign_bench.py). The envelope's
builder canonicalises once instead of serialising (xmldsig.sign_envelope remains for any other bytes).
"""

from __future__ import annotations

import base64
import re
from typing import NamedTuple

from lxml import etree

from hsm.errors import SigningError
from hsm.xmldsig import SignFn, SigningKey, c14n, digest_b64, new_key_info_id, refuse_signed, sgntr_of
from switchd.iso.xml import namespace_of

# An empty Sgntr as exclusive C14N writes it, with or without a prefix (the outbound AppHdr has none).
_EMPTY_SGNTR = re.compile(rb"<((?:[^\s<>:/]+:)?)Sgntr></\1Sgntr>")
XML_DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>\n"


class CanonicalEnvelope(NamedTuple):
    """`head` + AppHdr + Document + `tail`, the AppHdr and Document as exclusive C14N bytes.

    `app_hdr` is the canonical AppHdr with an empty Sgntr at [sgntr_start:sgntr_end] (the enveloped transform's
    view of the signed header); `sgntr_start + len(open tag)` is where the ds:Signature goes."""

    head: bytes  # the XML declaration and the wrapper's start tag
    app_hdr: bytes
    sgntr_start: int
    sgntr_end: int
    document: bytes
    tail: bytes  # the wrapper's end tag

    @property
    def unsigned(self) -> bytes:
        """The envelope without a Sgntr (what is kept, and sent when no signer is configured)."""
        hdr = self.app_hdr[: self.sgntr_start] + self.app_hdr[self.sgntr_end :]
        return b"".join((self.head, hdr, self.document, self.tail))


def canonical_envelope(wrapper: etree._Element, app_hdr: etree._Element, document: etree._Element) -> CanonicalEnvelope:
    """The envelope `<wrapper>` + AppHdr + Document, laid out for signing. `wrapper` is an empty element
    (its tag and namespace declarations are used); `app_hdr` is left as it was. Raises SigningError if the AppHdr
    is signed already or an element has no namespace (inside the wrapper it would take the wrapper's)."""
    for el in (wrapper, app_hdr, document):
        if not namespace_of(el):
            raise SigningError(f"<{el.tag}> has no namespace")
    q = app_hdr.tag[: app_hdr.tag.index("}") + 1]
    had_sgntr = next(app_hdr.iterchildren(q + "Sgntr"), None) is not None
    sgntr = sgntr_of(app_hdr)  # where head.001 puts it, inserted if missing
    try:
        refuse_signed(sgntr)
        hdr = c14n(app_hdr)
    finally:
        if not had_sgntr:
            app_hdr.remove(sgntr)
    found = _EMPTY_SGNTR.search(hdr)  # the first is the header's own: Sgntr precedes Rltd, the only later element
    if found is None:  # text or a comment in it: no place to put the signature alone
        raise SigningError("the AppHdr's Sgntr is not empty")
    wrapped = c14n(wrapper)
    cut = wrapped.index(b">") + 1
    return CanonicalEnvelope(
        XML_DECLARATION + wrapped[:cut], hdr, found.start(), found.end(), c14n(document), wrapped[cut:]
    )


class Digests(NamedTuple):
    """The base64 SHA-256 digests of an envelope's canonical AppHdr and Document: all a signer process needs of a
    laid-out envelope (a few dozen bytes to send it instead of the envelope)."""

    app_hdr: bytes
    document: bytes


def digests(envelope: CanonicalEnvelope) -> Digests:
    return Digests(digest_b64(envelope.app_hdr), digest_b64(envelope.document))


def signature_element(signed: Digests, key: SigningKey, sign: SignFn, *, key_info_id: bytes | None = None) -> bytes:
    """The ds:Signature (canonical bytes) over these digests: its SignedInfo goes to `sign` (the token), whatever
    that raises passes through."""
    key_info_id = key_info_id or new_key_info_id()
    signed_info, key_info_digest = key.signed_info(signed.app_hdr, signed.document, key_info_id)
    value = base64.b64encode(sign(signed_info))
    return key.signature(signed.app_hdr, signed.document, key_info_digest, key_info_id, value)


def insert_signature(envelope: CanonicalEnvelope, signature: bytes) -> bytes:
    """The envelope bytes with `signature` (from signature_element over its digests) in the AppHdr's Sgntr.
    digests -> signature_element (in a signer process) -> insert_signature is how hsm.service signs it."""
    hdr = envelope.app_hdr
    inside = hdr.index(b">", envelope.sgntr_start) + 1  # after Sgntr's start tag
    return b"".join((envelope.head, hdr[:inside], signature, hdr[inside:], envelope.document, envelope.tail))
