"""The envelope a bank receives: one head.001.001.02 AppHdr and one Document in a `BizMsg` of our own namespace.

Pure: elements and bytes in, bytes out; the creation time is passed in. Nothing is ever pretty-printed or
re-indented, because the AppHdr signature (exclusive C14N) is computed over the exact whitespace.

Rules for an outbound AppHdr derived from the one the participant sent (build_app_hdr), and why:

    Fr          the switch's BIC (given by the caller): the header's sender is who signs it, and switchd signs
                every outbound message with its own key (the participant's signature cannot survive a split)
    To          the destination bank's BIC: the receiver routes and authenticates on it
    BizMsgIdr   the outbound Document's GrpHdr/MsgId or Assgnmt/Id (a split part has a new one); MsgDefIdr its id
    CreDt       now: this is a new header instance
    PssblDplct  NOT inherited. Duplicates were refused at intake (DU01), so an accepted message is new to the
                switch; the flag is the switch's own statement that it may have delivered this message before
                (a replay, a re-send after an uncertain attempt): set_possible_duplicate
    Sgntr       dropped: it signed the inbound header and Document; switchd signs the outbound one
    kept        CharSet, BizSvc (unless given), MktPrctc, BizPrcgDt, Prty and Rltd describe the business message
                and still hold. CpyDplct is kept above all: COPY/CODU/DUPL mark a message for information only,
                and dropping the mark would turn an information copy into an instruction to pay.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime

from lxml import etree

from hsm.canonical import CanonicalEnvelope, canonical_envelope
from hsm.errors import SigningError
from switchd.errors import Rejection
from switchd.iso.rules import bic_problem
from switchd.iso.xml import ISO_NS_PREFIX, document_msg_id, local_name, namespace_of, parse_message

ENVELOPE_NS = "urn:switchd:xsd:envelope"  # the same wrapper tests/builders.py sends inbound
ENVELOPE_TAG = f"{{{ENVELOPE_NS}}}BizMsg"
_WRAPPER = etree.Element(ENVELOPE_TAG, nsmap={None: ENVELOPE_NS})  # only read (its start and end tags)
HEAD_ID = "head.001.001.02"
HEAD_NS = ISO_NS_PREFIX + HEAD_ID

# The sequence of BusinessApplicationHeaderV02 (schemas/iso20022/head.001.001.02.xsd).
APP_HDR_ORDER = (
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
    "PssblDplct",
    "Prty",
    "Sgntr",
    "Rltd",
)
_RANK = {name: i for i, name in enumerate(APP_HDR_ORDER)}
# What an outbound header keeps from the inbound one (see the module docstring).
KEPT_FROM_INBOUND = frozenset({"CharSet", "BizSvc", "MktPrctc", "BizPrcgDt", "CpyDplct", "Prty", "Rltd"})


def format_cre_dt(when: datetime) -> str:
    """CreDt text: UTC with an explicit +00:00 offset and milliseconds (valid ISODateTime, and the offset form
    CBPR+ asks for). Raises ValueError for a naive datetime: a header time must say its zone."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"CreDt {when!r} has no time zone")
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def build_app_hdr(
    inbound: etree._Element | None = None,
    *,
    fr_bic: str,
    to_bic: str,
    biz_msg_idr: str,
    msg_def_idr: str,
    cre_dt: datetime,
    biz_svc: str | None = None,
    possible_duplicate: bool = False,
) -> etree._Element:
    """The outbound head.001.001.02 AppHdr for a message whose inbound header was `inbound` (None: none).

    Fr, To, BizMsgIdr, MsgDefIdr and CreDt are set from the arguments; `biz_svc` None keeps the inbound BizSvc;
    KEPT_FROM_INBOUND elements are copied (into the head.001.001.02 namespace if the inbound header used another
    head.001 version); PssblDplct is written only when `possible_duplicate`; Sgntr is never copied. `inbound` is
    not modified. Raises ValueError for a malformed BIC, an empty or over-long (35) identifier, or a naive
    `cre_dt`.
    """
    for name, bic in (("Fr", fr_bic), ("To", to_bic)):
        problem = bic_problem(bic)
        if problem is not None:
            raise ValueError(f"AppHdr/{name}: {problem}")
    _check_text("BizMsgIdr", biz_msg_idr)
    _check_text("MsgDefIdr", msg_def_idr)
    if biz_svc is not None:
        _check_text("BizSvc", biz_svc)
    kept: dict[str, list[etree._Element]] = {}
    if inbound is not None:
        for child in inbound:
            name = local_name(child)
            if name in KEPT_FROM_INBOUND:
                kept.setdefault(name, []).append(_in_head_ns(child))
    hdr = etree.Element(f"{{{HEAD_NS}}}AppHdr", nsmap={None: HEAD_NS})
    q = f"{{{HEAD_NS}}}"

    def add(name: str, text: str) -> None:
        etree.SubElement(hdr, q + name).text = text

    def add_kept(name: str) -> None:
        hdr.extend(kept.get(name, ()))

    def add_fi(name: str, bic: str) -> None:
        party = etree.SubElement(hdr, q + name)
        fin = etree.SubElement(etree.SubElement(party, q + "FIId"), q + "FinInstnId")
        etree.SubElement(fin, q + "BICFI").text = bic

    add_kept("CharSet")
    add_fi("Fr", fr_bic)
    add_fi("To", to_bic)
    add("BizMsgIdr", biz_msg_idr)
    add("MsgDefIdr", msg_def_idr)
    if biz_svc is not None:
        add("BizSvc", biz_svc)
    else:
        add_kept("BizSvc")
    add_kept("MktPrctc")
    add("CreDt", format_cre_dt(cre_dt))
    add_kept("BizPrcgDt")
    add_kept("CpyDplct")
    if possible_duplicate:
        add("PssblDplct", "true")
    add_kept("Prty")
    add_kept("Rltd")
    return hdr


def _check_text(name: str, value: str) -> None:
    # Max35Text; blanks around an id would make it a different id to whoever compares it
    if not 1 <= len(value) <= 35 or value != value.strip():
        raise ValueError(f"AppHdr/{name} {value!r} is not 1 to 35 characters without surrounding blanks")


def _in_head_ns(el: etree._Element) -> etree._Element:
    """A copy of `el` without its tail (no stray whitespace between our elements), in the head.001.001.02
    namespace."""
    new = copy.deepcopy(el)
    new.tail = None
    if namespace_of(el) != HEAD_NS:
        old = "{" + namespace_of(el) + "}"
        for node in new.iter():
            if isinstance(node.tag, str) and node.tag.startswith(old):
                node.tag = f"{{{HEAD_NS}}}" + node.tag[len(old) :]
        etree.cleanup_namespaces(new)
    return new


def document_ids(document: etree._Element) -> tuple[str, str]:
    """(message id from the namespace, e.g. "pacs.008.001.08"; its identification) of a Document: what the
    AppHdr's MsgDefIdr and BizMsgIdr must say. The identification is GrpHdr/MsgId, or Assgnmt/Id for the
    investigation messages (camt.056, camt.029), which have no group header. Raises ValueError when the element is
    not an ISO 20022 Document with either."""
    ns = namespace_of(document)
    if local_name(document) != "Document" or not ns.startswith(ISO_NS_PREFIX):
        raise ValueError(f"not an ISO 20022 Document: {document.tag}")
    msg_id = document_msg_id(document)
    if msg_id is None:
        raise ValueError("the Document has no GrpHdr/MsgId (nor Assgnmt/Id)")
    return ns[len(ISO_NS_PREFIX) :], msg_id


def build_envelope(app_hdr: etree._Element, document: etree._Element | bytes) -> CanonicalEnvelope:
    """`<BizMsg xmlns="urn:switchd:xsd:envelope">` + AppHdr + Document, AppHdr and Document written in their
    exclusive C14N form (hsm/canonical.py: the signer then digests byte ranges instead of parsing); `.unsigned`
    is the UTF-8 bytes, with an XML declaration.

    `document` is a Document element or serialized Document bytes (e.g. a part from bulk.split_document); neither
    argument is modified. Raises ValueError when the AppHdr's BizMsgIdr / MsgDefIdr disagree with the Document
    (the bank would refuse it, FF01), or `document` is not a Document.
    """
    doc = _document(document)
    msg_def_idr, msg_id = document_ids(doc)
    q = "{" + namespace_of(app_hdr) + "}"
    said = (app_hdr.findtext(q + "MsgDefIdr"), app_hdr.findtext(q + "BizMsgIdr"))
    if said != (msg_def_idr, msg_id):
        raise ValueError(
            f"AppHdr says MsgDefIdr {said[0]!r}, BizMsgIdr {said[1]!r}; the Document is {msg_def_idr} {msg_id!r}"
        )
    try:
        return canonical_envelope(_WRAPPER, app_hdr, doc)
    except SigningError as exc:  # an AppHdr signed already, say: not an envelope we can build
        raise ValueError(str(exc)) from None


def outbound_envelope(
    document: etree._Element | bytes,
    *,
    fr_bic: str,
    to_bic: str,
    cre_dt: datetime,
    inbound_app_hdr: etree._Element | None = None,
    biz_svc: str | None = None,
    possible_duplicate: bool = False,
) -> CanonicalEnvelope:
    """The envelope for one outbound Document: its AppHdr derived from `inbound_app_hdr` (or built when None) with
    BizMsgIdr and MsgDefIdr read from the Document. Raises ValueError as build_app_hdr and build_envelope do."""
    doc = _document(document)
    msg_def_idr, msg_id = document_ids(doc)
    hdr = build_app_hdr(
        inbound_app_hdr,
        fr_bic=fr_bic,
        to_bic=to_bic,
        biz_msg_idr=msg_id,
        msg_def_idr=msg_def_idr,
        cre_dt=cre_dt,
        biz_svc=biz_svc,
        possible_duplicate=possible_duplicate,
    )
    return build_envelope(hdr, doc if isinstance(document, bytes) else document)


def is_possible_duplicate(envelope: bytes) -> bool:
    """Whether the envelope's AppHdr says PssblDplct true. Raises ValueError when it has no AppHdr."""
    return app_hdr_possible_duplicate(_parse_envelope(envelope)[1])


def app_hdr_possible_duplicate(app_hdr: etree._Element) -> bool:
    el = _pssbl_dplct(app_hdr)
    return el is not None and (el.text or "").strip() in ("true", "1")  # xs:boolean


def set_possible_duplicate(envelope: bytes, flag: bool = True, *, drop_signature: bool = False) -> bytes:
    """The envelope with AppHdr/PssblDplct set to true (`flag`) or removed (not `flag`), everything else as it was.

    Idempotent: when the header already says what `flag` asks, `envelope` itself is returned. The flag is inside
    the signed header, so changing it on a signed envelope (one with AppHdr/Sgntr) raises ValueError unless
    `drop_signature`, which removes the Sgntr so the caller can sign again. Also raises ValueError for bytes that
    are not an AppHdr + Document envelope.
    """
    root, hdr = _parse_envelope(envelope)
    if app_hdr_possible_duplicate(hdr) == flag and (flag or _pssbl_dplct(hdr) is None):
        return envelope
    q = "{" + namespace_of(hdr) + "}"
    sgntr = hdr.find(q + "Sgntr")
    if sgntr is not None:
        if not drop_signature:
            raise ValueError("the AppHdr is signed: changing PssblDplct would break the signature (drop_signature)")
        _remove(sgntr)
    existing = _pssbl_dplct(hdr)
    if not flag:
        assert existing is not None  # else we returned above
        _remove(existing)
    elif existing is not None:
        existing.text = "true"
    else:
        _insert_in_order(hdr, q, "PssblDplct", "true")
    return _replace_root(envelope, root)


def _pssbl_dplct(app_hdr: etree._Element) -> etree._Element | None:
    return app_hdr.find("{" + namespace_of(app_hdr) + "}PssblDplct")


def _insert_in_order(hdr: etree._Element, q: str, name: str, text: str) -> None:
    """Insert a child where the XSD sequence puts it, copying the neighbours' whitespace (an indented header
    stays indented alike, and inserting then removing gives the original bytes back)."""
    rank = _RANK[name]
    position = len(hdr)
    for i, child in enumerate(hdr):
        if _RANK.get(local_name(child), -1) > rank:
            position = i
            break
    new = etree.Element(q + name)
    new.text = text
    if position == 0:
        new.tail = hdr.text
    elif position == len(hdr):
        # appended last: the closing tag's indentation moves to us, we take our predecessor's
        last = hdr[-1]
        new.tail = last.tail
        last.tail = hdr[-2].tail if len(hdr) > 1 else hdr.text
    else:
        new.tail = hdr[position - 1].tail
    hdr.insert(position, new)


def _remove(el: etree._Element) -> None:
    """Remove `el` (lxml drops its tail with it); if it was the last child, its predecessor takes over its tail,
    which indents the parent's closing tag."""
    parent = el.getparent()
    assert parent is not None
    previous = el.getprevious()
    if el.getnext() is None and previous is not None:
        previous.tail = el.tail
    parent.remove(el)


def _parse_envelope(envelope: bytes) -> tuple[etree._Element, etree._Element]:
    try:
        parsed = parse_message(envelope, max_bytes=len(envelope))
    except Rejection as exc:
        raise ValueError(f"not an envelope: {exc.summary}") from None
    if parsed.app_hdr is None:
        raise ValueError("a bare Document: there is no AppHdr to carry PssblDplct")
    return parsed.root, parsed.app_hdr


def _document(document: etree._Element | bytes) -> etree._Element:
    if not isinstance(document, bytes):
        return document
    try:
        parsed = parse_message(document, max_bytes=len(document))
    except Rejection as exc:
        raise ValueError(f"not a Document: {exc.summary}") from None
    if parsed.app_hdr is not None:
        raise ValueError("expected a bare Document, got an envelope with an AppHdr")
    return parsed.document


# What may precede the root element of stored bytes: a BOM, an XML declaration, whitespace (the parser refuses a
# DOCTYPE, and our own envelopes carry no comments or PIs).
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:<\?xml(?P<decl>[^>]*)\?>)?\s*(?=<[^?!])")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _replace_root(original: bytes, root: etree._Element) -> bytes:
    """`original` with its root element re-serialized from `root`: the prolog (declaration as written) and the
    whitespace after the root are kept byte for byte, so only the edited element differs. Falls back to a fresh
    UTF-8 serialization when the original is in another encoding."""
    prolog = _PROLOG.match(original)
    encoding = _ENCODING.search(prolog.group("decl") or b"") if prolog is not None else None
    if prolog is None or (encoding is not None and encoding.group(1).upper() not in (b"UTF-8", b"UTF8")):
        return _serialize(root)
    rest = original[prolog.end() :]
    trailing = rest[len(rest.rstrip(b" \t\r\n")) :]
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return original[: prolog.end()] + body + trailing


def _serialize(root: etree._Element) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data
