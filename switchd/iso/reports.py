"""Status reports answering a message: pacs.002 for pacs.* and camt.* originals, pain.002 for pain.*, in .10 or .11.

The version is the caller's `report_def` (the catalogue's `report_for(original)`: the sender's version family).
Both versions share the elements written here. Pure: refs and findings in, UTF-8 bytes out. Every report validates
against its XSD whatever the original held: values copied from a (possibly invalid) original are trimmed or left
out where the report's types are stricter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from lxml import etree

from switchd.errors import Finding
from switchd.iso.catalogue import MessageDef
from switchd.iso.refs import MessageRefs, PmtInfRefs, TxRefs, tx_by_path, tx_for

# OrgnlMsgId is mandatory even when the original could not be read far enough to find its MsgId. ISO has no
# "unknown" value; NOTPROVIDED is the usual placeholder, and the group StsRsnInf then says why (the findings).
NOT_PROVIDED = "NOTPROVIDED"
REJECTED = "RJCT"
MAX_ADDTL_INF = 3  # AddtlInf lines (105 characters each) per reason: path and detail, trimmed beyond

_MAX4 = re.compile(r"[A-Za-z0-9]{1,4}")
_BIC = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_UUID4 = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}")
_NUMERIC15 = re.compile(r"[0-9]{1,15}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?")
# Characters XML 1.0 cannot carry (lxml refuses them): replaced, since details may quote raw input.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def build_status_report(
    *,
    report_def: MessageDef,
    original_def: MessageDef,
    original: MessageRefs | None,
    original_msg_id: str | None,
    findings: Sequence[Finding],
    report_msg_id: str,
    created_at: datetime,
    group_status: str = REJECTED,
    instructing_bic: str | None = None,
    instructed_bic: str | None = None,
    tx_statuses: Mapping[int, str] | None = None,
) -> bytes:
    """A status report on `original_def` message `original` (its refs; None when it could not be read).

    Each finding goes to the transaction its path lies in (else the one its tx_ref names), else, in pain.002, to
    the PmtInf its path lies in, else to the group: a StsRsnInf with Rsn/Cd = the finding's code and AddtlInf
    lines carrying its path and detail. Transactions with findings are listed with TxSts RJCT; transactions
    without are not listed (the group status covers them). `group_status` is RJCT, PART, or, with no findings,
    an accepting status such as ACCP or ACSC.

    `tx_statuses` (TxRefs.index -> TxSts) lists transactions whatever their findings: each one it names is
    listed with that status, its findings (if any) as its reasons; one it does not name is listed only for its
    findings, as RJCT. This is how a report on part of a message (some of its transactions went elsewhere) says
    what became of each transaction of the part, since the group status cannot. A pain.002 PmtInf then has the
    status its listed transactions share when they are all of it, else PART (RJCT for its own findings or a
    rejected group, as without).

    pacs.002 carries `instructing_bic` / `instructed_bic` as GrpHdr/InstgAgt / InstdAgt. pain.002 has no such
    pair: `instructing_bic` becomes GrpHdr/InitgPty (AnyBIC), `instructed_bic` is not used, and GrpHdr/DbtrAgt
    is the original's debtor agent when all its PmtInf share one. A BIC that does not fit the schema is left out.

    Raises ValueError for a caller mistake: `report_msg_id` not 1-35 characters, `group_status` or a
    `tx_statuses` value not a 1-4 character code, findings with an accepting status, or a report type that is
    neither pacs.002 nor pain.002.
    """
    if not 1 <= len(report_msg_id) <= 35:
        raise ValueError(f"report_msg_id {report_msg_id!r} is not 1-35 characters")
    if _MAX4.fullmatch(group_status) is None:
        raise ValueError(f"group_status {group_status!r} is not an ISO status code")
    if findings and group_status not in (REJECTED, "PART"):
        raise ValueError(f"findings given with group status {group_status}: reasons go with RJCT or PART")
    if report_def.family not in ("pacs.002", "pain.002"):
        raise ValueError(f"{report_def.id} is not a status report this module builds")
    listed = dict(tx_statuses or {})
    for index, status in listed.items():
        if _MAX4.fullmatch(status) is None:
            raise ValueError(f"status {status!r} of transaction {index} is not an ISO status code")

    placed = _place(findings, original, listed, with_pmt_infs=report_def.family == "pain.002")
    q = "{" + report_def.namespace + "}"
    doc = etree.Element(q + "Document", nsmap={None: report_def.namespace})
    body = etree.SubElement(doc, q + report_def.root)
    grp = _el(body, "GrpHdr")
    _el(grp, "MsgId", _clean(report_msg_id))
    _el(grp, "CreDtTm", created_at.isoformat(timespec="milliseconds"))
    if report_def.family == "pacs.002":
        _agent(grp, "InstgAgt", instructing_bic)
        _agent(grp, "InstdAgt", instructed_bic)
    else:
        if instructing_bic is not None and _BIC.fullmatch(instructing_bic):
            _el(_el(_el(_el(grp, "InitgPty"), "Id"), "OrgId"), "AnyBIC", instructing_bic)
        dbtr_agts = {p.dbtr_agt_bic for p in original.payment_infos} if original is not None else set()
        if len(dbtr_agts) == 1:
            _agent(grp, "DbtrAgt", dbtr_agts.pop())

    _original_group(body, original_def, original, original_msg_id, group_status, placed.group)
    if report_def.family == "pacs.002":
        for tx, tx_findings in placed.txs:
            _tx(body, tx, listed.get(tx.index, REJECTED), tx_findings, pacs=True)
    else:
        for pmt_inf, own, txs in placed.pmt_infs:
            _pmt_inf(body, pmt_inf, own, txs, group_status, listed if tx_statuses is not None else None)
    data: bytes = etree.tostring(doc, xml_declaration=True, encoding="UTF-8")
    return data


# -- placing findings ---------------------------------------------------------------------------------------------


class _Placed:
    """Findings sorted by level, transactions and PmtInf in document order."""

    def __init__(self) -> None:
        self.group: list[Finding] = []
        self.txs: list[tuple[TxRefs, list[Finding]]] = []
        self.pmt_infs: list[tuple[PmtInfRefs, list[Finding], list[tuple[TxRefs, list[Finding]]]]] = []


def _pmt_inf_for(path: str | None, by_path: dict[str, PmtInfRefs]) -> PmtInfRefs | None:
    while path:
        p = by_path.get(path)
        if p is not None:
            return p
        path = path.rpartition("/")[0]
    return None


def _place(
    findings: Sequence[Finding], original: MessageRefs | None, listed: Mapping[int, str], *, with_pmt_infs: bool
) -> _Placed:
    placed = _Placed()
    if original is None:
        placed.group.extend(findings)
        return placed
    # Lookups by path and id, so a bulk file with many findings stays linear.
    tx_paths = tx_by_path(original.transactions)
    pmt_inf_paths = {p.path: p for p in original.payment_infos}
    tx_ids: dict[str, TxRefs] = {}
    for t in reversed(original.transactions):  # reversed: the first of equal ids wins
        for ref in (t.tx_id, t.end_to_end_id):
            if ref is not None:
                tx_ids[ref] = t
    by_tx: dict[int, list[Finding]] = {}
    by_pmt_inf: dict[int, list[Finding]] = {}
    for f in findings:
        tx = tx_for(f.path, tx_paths)
        if tx is None and f.tx_ref is not None:
            tx = tx_ids.get(f.tx_ref)
        if tx is not None:
            by_tx.setdefault(tx.index, []).append(f)
            continue
        pmt_inf = _pmt_inf_for(f.path, pmt_inf_paths)
        if with_pmt_infs and pmt_inf is not None:
            by_pmt_inf.setdefault(pmt_inf.index, []).append(f)
        else:
            placed.group.append(f)
    placed.txs = [(t, by_tx.get(t.index, [])) for t in original.transactions if t.index in by_tx or t.index in listed]
    if with_pmt_infs:
        txs_of: dict[int | None, list[tuple[TxRefs, list[Finding]]]] = {}
        for t, fs in placed.txs:
            txs_of.setdefault(t.pmt_inf_index, []).append((t, fs))
        for p in original.payment_infos:
            txs = txs_of.get(p.index, [])
            if p.index in by_pmt_inf or txs:
                placed.pmt_infs.append((p, by_pmt_inf.get(p.index, []), txs))
        # A transaction outside any PmtInf cannot be reported in pain.002: its reasons go to the group.
        known = {p.index for p in original.payment_infos}
        for t, fs in placed.txs:
            if t.pmt_inf_index not in known:
                placed.group.extend(fs)
    return placed


# -- writing ------------------------------------------------------------------------------------------------------


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    q = parent.tag[: parent.tag.index("}") + 1]
    child = etree.SubElement(parent, q + name)
    if text is not None:
        child.text = text
    return child


def _clean(text: str) -> str:
    return _NOT_XML.sub("?", text)


def _max35(text: str | None) -> str | None:
    """An id from the original as Max35Text: trimmed to 35 (only an invalid original has longer ones)."""
    if text is None:
        return None
    text = _clean(text)[:35]
    return text or None


def _agent(parent: etree._Element, name: str, bic: str | None) -> None:
    if bic is not None and _BIC.fullmatch(bic):
        _el(_el(_el(parent, name), "FinInstnId"), "BICFI", bic)


def _date_time(text: str | None) -> str | None:
    if text is None or _DATE_TIME.fullmatch(text) is None:
        return None
    try:
        datetime.fromisoformat(text)  # the pattern lets month 13 through; xs:dateTime does not
    except ValueError:
        return None
    return text


def _reasons(parent: etree._Element, findings: Sequence[Finding]) -> None:
    for f in findings:
        rsn_inf = _el(parent, "StsRsnInf")
        rsn = _el(rsn_inf, "Rsn")
        if _MAX4.fullmatch(f.code):
            _el(rsn, "Cd", f.code)
        else:  # not an ISO code (a bug upstream): still say it, as a proprietary reason
            _el(rsn, "Prtry", _max35(f.code) or "NARR")
        for line in _addtl_inf(f):
            _el(rsn_inf, "AddtlInf", line)


def _addtl_inf(f: Finding) -> list[str]:
    where = f.path or ""
    if f.line is not None:
        where = f"{where} (line {f.line})" if where else f"line {f.line}"
    text = _clean(f"{where}: {f.detail}" if where else f.detail).strip() or f.code
    lines = [text[i : i + 105] for i in range(0, len(text), 105)]
    if len(lines) > MAX_ADDTL_INF:
        lines = lines[:MAX_ADDTL_INF]
        lines[-1] = lines[-1][:104] + "\u2026"
    return lines


def _original_group(
    body: etree._Element,
    original_def: MessageDef,
    original: MessageRefs | None,
    original_msg_id: str | None,
    group_status: str,
    findings: Sequence[Finding],
) -> None:
    og = _el(body, "OrgnlGrpInfAndSts")
    msg_id = _max35(original.msg_id if original is not None and original.msg_id else original_msg_id)
    _el(og, "OrgnlMsgId", msg_id or NOT_PROVIDED)
    _el(og, "OrgnlMsgNmId", original_def.id)
    if original is not None:
        cre_dt_tm = _date_time(original.cre_dt_tm)
        if cre_dt_tm is not None:
            _el(og, "OrgnlCreDtTm", cre_dt_tm)
        if original.nb_of_txs is not None and _NUMERIC15.fullmatch(original.nb_of_txs):
            _el(og, "OrgnlNbOfTxs", original.nb_of_txs)
    _el(og, "GrpSts", group_status)
    _reasons(og, findings)


def _tx(parent: etree._Element, tx: TxRefs, status: str, findings: Sequence[Finding], *, pacs: bool) -> None:
    el = _el(parent, "TxInfAndSts")
    for name, value in (("OrgnlInstrId", tx.instr_id), ("OrgnlEndToEndId", tx.end_to_end_id)):
        text = _max35(value)
        if text is not None:
            _el(el, name, text)
    if pacs:
        tx_id = _max35(tx.tx_id)
        if tx_id is not None:
            _el(el, "OrgnlTxId", tx_id)
    uetr = tx.uetr.lower() if tx.uetr is not None else None
    if uetr is not None and _UUID4.fullmatch(uetr):
        _el(el, "OrgnlUETR", uetr)
    _el(el, "TxSts", status)
    _reasons(el, findings)


def _pmt_inf(
    body: etree._Element,
    pmt_inf: PmtInfRefs,
    own: Sequence[Finding],
    txs: Sequence[tuple[TxRefs, list[Finding]]],
    group_status: str,
    listed: Mapping[int, str] | None,
) -> None:
    el = _el(body, "OrgnlPmtInfAndSts")
    _el(el, "OrgnlPmtInfId", _max35(pmt_inf.pmt_inf_id) or NOT_PROVIDED)
    if pmt_inf.nb_of_txs is not None and _NUMERIC15.fullmatch(pmt_inf.nb_of_txs):
        _el(el, "OrgnlNbOfTxs", pmt_inf.nb_of_txs)
    # Its own findings reject the whole PmtInf; rejected transactions alone make it partly accepted, unless the
    # whole message is rejected anyway. With every transaction listed, a PmtInf wholly in the report has the
    # status its transactions share; one only partly in it (the rest went elsewhere) is PART like the group.
    status = "PART"
    if own or group_status == REJECTED:
        status = REJECTED
    elif listed is not None:
        statuses = {listed.get(tx.index, REJECTED) for tx, _ in txs}
        if len(statuses) == 1 and len(txs) == pmt_inf.tx_count:
            status = statuses.pop()
    _el(el, "PmtInfSts", status)
    _reasons(el, own)
    for tx, findings in txs:
        _tx(el, tx, listed.get(tx.index, REJECTED) if listed is not None else REJECTED, findings, pacs=False)
