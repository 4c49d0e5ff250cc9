"""Hardened XML parsing of inbound messages and the AppHdr (head.001) + Document envelope split.

Rules: no DTD (any DOCTYPE is refused, so no entity can be declared, let alone expanded), no network, no
XInclude, no processing instructions; byte size is capped before parsing and libxml2's own depth (256) and
text-node limits stay on (huge_tree=False).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from switchd.errors import Rejection, RejectKind

ISO_NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
HEAD_NS_PREFIX = ISO_NS_PREFIX + "head.001."


def hardened_parser() -> etree.XMLParser:
    """The parser for anything from outside (NOTES.md): no DTD, no entities, no network, libxml2's limits on.
    A fresh one per document (~1.5 us): lxml parsers must not be shared across threads."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_pis=True,
        remove_comments=True,
        collect_ids=False,
    )


@dataclass(frozen=True)
class ParsedMessage:
    """A parsed inbound message: the Document element, and the AppHdr when the sender wrapped one."""

    root: etree._Element
    document: etree._Element
    namespace: str  # the Document's namespace, which names the message and version
    app_hdr: etree._Element | None
    app_hdr_namespace: str | None


def parse_message(raw: bytes, *, max_bytes: int) -> ParsedMessage:
    """Parse `raw` safely and split it into AppHdr and Document.

    Accepts a bare `Document`, or one root element wrapping exactly one `AppHdr` and one `Document` (in that
    order, nothing else). Raises Rejection(TOO_LARGE) over `max_bytes`, Rejection(NOT_WELL_FORMED, FF01) for
    anything that is not well-formed XML, carries a DOCTYPE, or is not shaped like an ISO 20022 message.
    """
    if len(raw) > max_bytes:
        raise Rejection.single(RejectKind.TOO_LARGE, "FF01", f"message of {len(raw)} bytes exceeds {max_bytes}")
    if not raw or raw.isspace():
        raise Rejection.single(RejectKind.NOT_WELL_FORMED, "FF01", "empty message")
    if b"<!DOCTYPE" in raw:
        # Refuse before libxml2 sees it: no entity declaration is ever parsed. (A UTF-16 DOCTYPE slips past this
        # byte scan and is caught by the docinfo check below.)
        doctype_line = raw.count(b"\n", 0, raw.index(b"<!DOCTYPE")) + 1
        raise Rejection.single(RejectKind.NOT_WELL_FORMED, "FF01", "DOCTYPE is not allowed", line=doctype_line)
    try:
        root = etree.fromstring(raw, hardened_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        raise Rejection.single(
            RejectKind.NOT_WELL_FORMED, "FF01", f"not well-formed XML: {exc.msg}", line=line
        ) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise Rejection.single(RejectKind.NOT_WELL_FORMED, "FF01", "DOCTYPE is not allowed", line=1)
    _refuse_relative_namespaces(raw, root)
    return split_envelope(root)


# A namespace declaration whose value does not start with a URI scheme (relative, or not a URI at all).
_SUSPECT_NS = re.compile(
    rb"""xmlns(?::[^\s=>]+)?\s*=\s*(?:"(?![A-Za-z][A-Za-z0-9+.-]*:)[^"]|'(?![A-Za-z][A-Za-z0-9+.-]*:)[^'])"""
)
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _refuse_relative_namespaces(raw: bytes, root: etree._Element) -> None:
    """Refuse namespace URIs that are not absolute: canonical XML (C14N, which signatures are computed over) cannot
    represent them, so such a message could be neither signed for the bank nor have its signature checked.

    The byte scan is the cheap filter (it may also hit text that looks like a declaration); the tree decides."""
    if _SUSPECT_NS.search(raw) is None:
        return
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        for prefix, uri in el.nsmap.items():
            if uri and not _ABSOLUTE_URI.match(uri):
                what = f"xmlns:{prefix}" if prefix else "xmlns"
                raise Rejection.single(
                    RejectKind.NOT_WELL_FORMED,
                    "FF01",
                    f"{what}={uri!r} is not an absolute namespace URI",
                    line=el.sourceline,
                )


def document_msg_id(document: etree._Element) -> str | None:
    """The message's identification, read without the schema's blessing (so an invalid message's report can name
    it too): GrpHdr/MsgId, or Assgnmt/Id for the investigation messages (camt.056, camt.029), which have no group
    header. Stripped; None when absent or empty."""
    for body in document:
        if not isinstance(body.tag, str):
            continue
        for block in body:
            name = local_name(block)
            if name in ("GrpHdr", "Assgnmt"):
                wanted = "MsgId" if name == "GrpHdr" else "Id"
                for child in block:
                    if local_name(child) == wanted:
                        return (child.text or "").strip() or None
                return None
    return None


def local_name(el: etree._Element) -> str:
    # string ops on "{ns}name": etree.QName costs ~2 us a call and this runs several times per message
    tag = el.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def namespace_of(el: etree._Element) -> str:
    tag = el.tag
    return tag[1 : tag.index("}")] if isinstance(tag, str) and tag.startswith("{") else ""


def split_envelope(root: etree._Element) -> ParsedMessage:
    """Find Document (and AppHdr) in a parsed tree; see parse_message for the accepted shapes."""
    if local_name(root) == "Document":
        ns = namespace_of(root)
        _require_iso(ns, root)
        return ParsedMessage(root, root, ns, None, None)
    children = [c for c in root if isinstance(c.tag, str)]
    names = [local_name(c) for c in children]
    if names != ["AppHdr", "Document"]:
        raise Rejection.single(
            RejectKind.NOT_WELL_FORMED,
            "FF01",
            f"expected a Document, or an envelope holding AppHdr then Document; <{local_name(root)}> holds "
            f"{', '.join(names) or 'nothing'}",
            path=f"/{local_name(root)}",
            line=root.sourceline,
        )
    if (root.text and root.text.strip()) or any(c.tail and c.tail.strip() for c in children):
        raise Rejection.single(
            RejectKind.NOT_WELL_FORMED,
            "FF01",
            "text outside AppHdr and Document",
            path=f"/{local_name(root)}",
        )
    hdr, doc = children
    hdr_ns, doc_ns = namespace_of(hdr), namespace_of(doc)
    if not hdr_ns.startswith(HEAD_NS_PREFIX):
        raise Rejection.single(
            RejectKind.NOT_WELL_FORMED,
            "FF01",
            f"AppHdr namespace {hdr_ns!r} is not a head.001 namespace",
            path=f"/{local_name(root)}/AppHdr",
            line=hdr.sourceline,
        )
    _require_iso(doc_ns, doc)
    return ParsedMessage(root, doc, doc_ns, hdr, hdr_ns)


def _require_iso(ns: str, el: etree._Element) -> None:
    if not ns.startswith(ISO_NS_PREFIX):
        raise Rejection.single(
            RejectKind.NOT_WELL_FORMED,
            "FF01",
            f"Document namespace {ns!r} is not an ISO 20022 namespace",
            path="/Document",
            line=el.sourceline,
        )


_PATH_STEP = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\[[1-9][0-9]*\])?")


def element_at(top: etree._Element, path: str) -> etree._Element | None:
    """The element `path` (element_path's form: `/Document/.../CdtTrfTxInf[2]/Amt`) names, looked up from `top`
    (the AppHdr or Document its first step names); None when it names nothing there (an absent element).

    One XPath in C: a step `Name[n]` means the n-th child called Name in both notations, and a bulk file's
    9,000th transaction costs no Python loop over its siblings."""
    steps = path.strip("/").split("/")
    if steps[0] != local_name(top) or not all(_PATH_STEP.fullmatch(step) for step in steps[1:]):
        return None
    if len(steps) == 1:
        return top
    namespace = namespace_of(top)
    if not namespace:
        found = top.xpath("/".join(steps[1:]))
    else:
        found = top.xpath("/".join(f"s:{step}" for step in steps[1:]), namespaces={"s": namespace})
    return found[0] if isinstance(found, list) and found and isinstance(found[0], etree._Element) else None


_NAMESPACE_IN_STEP = re.compile(r"\{[^}]*\}")


def element_path(el: etree._Element) -> str:
    """`/Document/.../CdtTrfTxInf[2]/CdtrAcct/Id/IBAN`: local names, an index only where a name repeats among its
    siblings (the form validate.PathNamer gives schema errors), from AppHdr or Document, never our envelope root.

    lxml's getelementpath does the walk and the sibling counting in C: a bulk file's findings cost ~10 us each
    (a Python walk was ~100 us, and quadratic without a cache of sibling steps)."""
    tree = el.getroottree()
    root = tree.getroot()
    root_name = local_name(root)
    if el is root:
        return "/" + root_name
    steps = _NAMESPACE_IN_STEP.sub("", tree.getelementpath(el))
    if root_name in ("AppHdr", "Document") or not steps.startswith(("AppHdr", "Document")):
        return f"/{root_name}/{steps}"
    return "/" + steps
