"""Splitting a bulk payment message into one valid message per group of transactions (e.g. per destination bank).

Pure: a parsed Document and a partition of its transaction indexes in, one serialized Document per group out.

Theory of operation. Each part is assembled from the original tree, never by editing it: the Document and the
elements that hold transactions (the message root; in pain.001 also each PmtInf) are copied shallowly, every other
child is deep-copied unchanged, and only the group's transactions are copied in, in document order. So a part costs
its own size plus the header, not the whole file, and nothing but these fields differs from the original:

    GrpHdr/MsgId              the caller's id for the part
    GrpHdr/NbOfTxs            the part's transaction count
    GrpHdr/CtrlSum            the sum of the part's amounts (only where the original has one)
    GrpHdr/TtlIntrBkSttlmAmt  likewise (pacs.008, pacs.009); its Ccy attribute is kept
    PmtInf/NbOfTxs, CtrlSum   per kept pain.001 PmtInf, where present; PmtInf left without transactions are dropped

Totals are exact (Decimal, with enough precision that nothing rounds) and are written with as many decimals as
the original total was written with, more only when the exact sum needs them: "350.50" style stays "100.00",
"10.5" style stays "3.5". A single group holding every transaction is not a split: the original Document comes
back as it is, MsgId included.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Sequence
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import NamedTuple

from lxml import etree

from switchd.iso.catalogue import MessageDef
from switchd.iso.refs import MessageRefs


class _Shape(NamedTuple):
    """Where a family keeps its transactions and which totals describe them (local names)."""

    container: str | None  # the element between the message root and the transactions (pain.001 PmtInf)
    tx: str  # the transaction element
    amount: tuple[str, ...]  # path from a transaction to its amount
    group_totals: tuple[str, ...]  # GrpHdr children that are the sum of the amounts
    container_totals: tuple[str, ...]  # container children that are the sum of its amounts


# By family, not by version: the shapes below hold for every version in use (2019 and later), so a new version
# (pacs.008.001.09, pain.001.001.10) splits as soon as the catalogue lists it.
_PACS_CREDIT_TRANSFER = _Shape(None, "CdtTrfTxInf", ("IntrBkSttlmAmt",), ("CtrlSum", "TtlIntrBkSttlmAmt"), ())
SHAPES: dict[str, _Shape] = {
    "pacs.008": _PACS_CREDIT_TRANSFER,
    "pacs.009": _PACS_CREDIT_TRANSFER,
    "pain.001": _Shape("PmtInf", "CdtTrfTxInf", ("Amt", "InstdAmt"), ("CtrlSum",), ("NbOfTxs", "CtrlSum")),
}

MsgIds = Callable[[int], str] | Sequence[str]


class _Tx(NamedTuple):
    element: etree._Element
    container: int | None  # index of its container (pain.001 PmtInf), None when it sits under the message root
    amount: Decimal | None  # None when unreadable: only an error if a total must be recomputed


def splittable(defn: MessageDef) -> bool:
    """Whether split_document knows how to split messages of this definition."""
    return defn.family in SHAPES


def split_document(
    document: etree._Element,
    defn: MessageDef,
    refs: MessageRefs,
    groups: Sequence[Collection[int]],
    msg_ids: MsgIds,
) -> list[bytes]:
    """One serialized Document (UTF-8, XML declaration) per group of transaction indexes, in the order of `groups`.

    `document` is the Document element of a message of type `defn` (read, never modified); `refs` its references
    (extract_refs), whose TxRefs.index numbers the transactions in document order across the whole message.
    `groups` must partition those indexes: every index exactly once, no empty group. `msg_ids` gives each part's
    new GrpHdr/MsgId, by part number (0-based) or as a list; it is not consulted when there is a single group,
    which returns the original Document unchanged. Transactions keep their document order within a part.

    Raises ValueError for a bad partition, a message type that cannot be split, refs that do not describe this
    document, part MsgIds that are empty, longer than 35 characters or repeated, or a total that must be
    recomputed over an amount that is missing or not a number.
    """
    shape, q, body, txs = _read(document, defn, refs)
    parts = _check_partition(groups, len(txs))
    if len(parts) == 1:
        return [_serialize(document)]
    ids = _part_ids(msg_ids, len(parts))
    return [_part(document, body, txs, part, shape, q, msg_id) for part, msg_id in zip(parts, ids, strict=True)]


def split_part(
    document: etree._Element,
    defn: MessageDef,
    refs: MessageRefs,
    indexes: Collection[int],
    msg_id: str,
) -> bytes:
    """One part of a split, without building the others: what split_document would return for the group
    `indexes` with MsgId `msg_id` (and the original Document, MsgId unchanged, when `indexes` are all the
    transactions). For a delivery worker that prepares one destination's part at a time.

    Raises ValueError for an empty group, an index out of range or repeated, and as split_document does.
    """
    shape, q, body, txs = _read(document, defn, refs)
    (part,) = _check_partition([indexes], len(txs), complete=False)
    if len(part) == len(txs):
        return _serialize(document)
    (msg_id,) = _part_ids([msg_id], 1)
    return _part(document, body, txs, part, shape, q, msg_id)


def _read(
    document: etree._Element, defn: MessageDef, refs: MessageRefs
) -> tuple[_Shape, str, etree._Element, list[_Tx]]:
    """(shape, "{namespace}", message root, transactions) after checking that `refs` describe `document`."""
    shape = SHAPES.get(defn.family)
    if shape is None:
        raise ValueError(f"{defn.id} messages cannot be split (splittable: {', '.join(sorted(SHAPES))})")
    q = "{" + defn.namespace + "}"
    if document.tag != q + "Document":
        raise ValueError(f"not the Document of a {defn.id} message: {document.tag}")
    body = _only_child(document, q + defn.root)
    if body is None:
        raise ValueError(f"{defn.id} Document has no {defn.root}")
    txs = _transactions(body, shape, q)
    if refs.message_id != defn.id or (refs.transactions and len(refs.transactions) != len(txs)):
        raise ValueError(
            f"refs describe a {refs.message_id} with {len(refs.transactions)} transactions, "
            f"the Document is a {defn.id} with {len(txs)}"
        )
    return shape, q, body, txs


# -- reading the original ------------------------------------------------------------------------------------------


def _only_child(parent: etree._Element, tag: str) -> etree._Element | None:
    for child in parent:
        if child.tag == tag:
            return child
    return None


def _transactions(body: etree._Element, shape: _Shape, q: str) -> list[_Tx]:
    """Every transaction of the message, in document order (the order of TxRefs.index)."""
    tx_tag = q + shape.tx
    amount_path = [q + name for name in shape.amount]
    txs: list[_Tx] = []
    if shape.container is None:
        for child in body:
            if child.tag == tx_tag:
                txs.append(_Tx(child, None, _amount(child, amount_path)))
        return txs
    container_tag = q + shape.container
    c = 0
    for child in body:
        if child.tag == container_tag:
            for el in child:
                if el.tag == tx_tag:
                    txs.append(_Tx(el, c, _amount(el, amount_path)))
            c += 1
    return txs


def _amount(tx: etree._Element, path: list[str]) -> Decimal | None:
    node: etree._Element | None = tx
    for tag in path:
        node = _only_child(node, tag) if node is not None else None
    if node is None or node.text is None:
        return None
    try:
        value = Decimal(node.text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# -- checking the caller's input -----------------------------------------------------------------------------------


def _check_partition(groups: Sequence[Collection[int]], n: int, *, complete: bool = True) -> list[list[int]]:
    """The groups as sorted index lists, after checking that they partition range(n) (with `complete` False:
    a part of it)."""
    if not groups:
        raise ValueError("no groups: a partition of the transactions needs at least one")
    seen = [False] * n
    parts = []
    for g, group in enumerate(groups):
        if not group:
            raise ValueError(f"group {g} is empty")
        part = []
        for index in group:
            # bool is an int subclass: True would silently mean transaction 1
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
                raise ValueError(f"group {g}: {index!r} is not a transaction index (0..{n - 1})")
            if seen[index]:
                raise ValueError(f"transaction {index} is in more than one group (or twice in group {g})")
            seen[index] = True
            part.append(index)
        parts.append(sorted(part))
    missing = [i for i, s in enumerate(seen) if not s] if complete else []
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise ValueError(f"{len(missing)} transactions are in no group: {shown}")
    return parts


def _part_ids(msg_ids: MsgIds, n: int) -> list[str]:
    if isinstance(msg_ids, str):
        raise ValueError(f"msg_ids is one string ({msg_ids!r}), not one id per part")
    if callable(msg_ids):
        ids = [msg_ids(i) for i in range(n)]
    else:
        ids = list(msg_ids)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} MsgIds for {n} parts")
    for i, msg_id in enumerate(ids):
        # GrpHdr/MsgId is Max35Text; surrounding blanks would make it a different id to every reader
        if not isinstance(msg_id, str) or not 1 <= len(msg_id) <= 35 or msg_id != msg_id.strip():
            raise ValueError(f"part {i}: MsgId {msg_id!r} is not 1 to 35 characters without surrounding blanks")
    if len(set(ids)) != n:
        raise ValueError(f"part MsgIds repeat: {ids}")
    return ids


# -- building a part -----------------------------------------------------------------------------------------------


def _part(
    document: etree._Element,
    body: etree._Element,
    txs: list[_Tx],
    indexes: list[int],
    shape: _Shape,
    q: str,
    msg_id: str,
) -> bytes:
    chosen = [txs[i] for i in indexes]
    # The Document keeps every namespace in scope, as tostring() of the original would write it.
    new_doc = etree.Element(document.tag, dict(document.attrib), nsmap=document.nsmap)
    new_doc.text = document.text
    for child in document:
        new_doc.append(_shallow(child) if child is body else copy.deepcopy(child))
    new_body = new_doc[list(document).index(body)]
    by_container: dict[int | None, list[_Tx]] = {}
    for tx in chosen:
        by_container.setdefault(tx.container, []).append(tx)
    grp_tag, tx_tag = q + "GrpHdr", q + shape.tx
    container_tag = q + shape.container if shape.container is not None else None
    c = 0
    placed = False
    for child in body:
        tag = child.tag
        if tag == grp_tag:
            new_body.append(_group_header(child, chosen, shape, q, msg_id))
        elif tag == container_tag:
            kept = by_container.get(c)
            if kept is not None:
                new_body.append(_container(child, kept, shape, q))
            c += 1
        elif tag == tx_tag and container_tag is None:
            # the chosen transactions take the place of the original's transactions, in document order
            if not placed:
                new_body.extend(copy.deepcopy(tx.element) for tx in chosen)
                placed = True
        else:
            new_body.append(copy.deepcopy(child))
    _keep_last_tail(new_body, body)
    return _serialize(new_doc)


def _shallow(el: etree._Element) -> etree._Element:
    """A childless copy of `el`: tag, attributes, text, tail and the namespaces it declares itself."""
    parent = el.getparent()
    inherited = parent.nsmap if parent is not None else {}
    own = {k: v for k, v in el.nsmap.items() if inherited.get(k) != v}
    new = etree.Element(el.tag, dict(el.attrib), nsmap=own or None)
    new.text, new.tail = el.text, el.tail
    return new


def _container(original: etree._Element, kept: list[_Tx], shape: _Shape, q: str) -> etree._Element:
    """A pain.001 PmtInf holding only `kept`, with its own count and sum recomputed where present."""
    tx_tag = q + shape.tx
    total_in_original = sum(1 for child in original if child.tag == tx_tag)
    if len(kept) == total_in_original:
        return copy.deepcopy(original)  # whole block: counts and sums are already right
    new = _shallow(original)
    keep = {id(tx.element) for tx in kept}
    for child in original:
        if child.tag != tx_tag or id(child) in keep:
            new.append(copy.deepcopy(child))
    _keep_last_tail(new, original)
    _set_totals(new, kept, shape.container_totals, q, where=shape.container or "")
    return new


def _group_header(original: etree._Element, chosen: list[_Tx], shape: _Shape, q: str, msg_id: str) -> etree._Element:
    grp = copy.deepcopy(original)
    msg_id_el = _only_child(grp, q + "MsgId")
    if msg_id_el is None:
        raise ValueError("GrpHdr has no MsgId")
    msg_id_el.text = msg_id
    _set_totals(grp, chosen, ("NbOfTxs", *shape.group_totals), q, where="GrpHdr")
    return grp


def _set_totals(el: etree._Element, txs: list[_Tx], names: tuple[str, ...], q: str, *, where: str) -> None:
    """Rewrite the count (NbOfTxs) and sums named in `names` that `el` has; leave absent ones absent."""
    total: Decimal | None = None
    for name in names:
        target = _only_child(el, q + name)
        if target is None:
            continue
        if name == "NbOfTxs":
            target.text = str(len(txs))
            continue
        if total is None:
            total = _sum(txs, where)
        target.text = format_total(total, target.text)


def _sum(txs: list[_Tx], where: str) -> Decimal:
    # Exact: a context wide enough for any ISO amount (18 digits) times any count, and Inexact trapped so that a
    # rounding could never pass silently. A new context per sum: contexts record flags, i.e. they are state.
    ctx = Context(prec=100, traps=[Inexact, InvalidOperation])
    total = Decimal(0)
    for tx in txs:
        if tx.amount is None:
            raise ValueError(f"{where}: cannot recompute a total: a transaction has no readable amount")
        total = ctx.add(total, tx.amount)
    return total


def format_total(total: Decimal, original_text: str | None) -> str:
    """`total` written with as many decimals as `original_text` has, or more if the exact value needs them."""
    written = 0
    if original_text is not None:
        text = original_text.strip()
        if "." in text:
            written = len(text) - text.index(".") - 1
    exponent = total.normalize().as_tuple().exponent
    needed = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return f"{total:.{max(written, needed)}f}"


def _keep_last_tail(new: etree._Element, original: etree._Element) -> None:
    """Give the copy's last child the original's last tail, so a pretty-printed file stays indented alike."""
    if len(new) and len(original):
        new[-1].tail = original[-1].tail


def _serialize(document: etree._Element) -> bytes:
    data: bytes = etree.tostring(document, xml_declaration=True, encoding="UTF-8", with_tail=False)
    return data
