"""The references of an ISO 20022 message: ids, counts, totals, agent BICs, per-transaction ids and amounts.

Pure and on the hot path: one walk over the Document's children comparing namespace-qualified tags, no XPath.

Where the time goes (lxml 6.1, ~0.25 us per element touched): making the Python proxy of an element and its
`.tag` string is most of the cost, so each element is visited once, children are read in one loop per parent
into a list indexed by a per-namespace tag table, and everything derived from the MessageDef (tags, family, root
path) is computed once per message definition, not per call. The result types are NamedTuples: building a frozen
dataclass costs ~3.5 us (an `object.__setattr__` per field), a NamedTuple ~0.4-1 us, and a 100-transaction
message builds 100 of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from lxml import etree

from switchd.iso.catalogue import NAMESPACE_PREFIX, MessageDef

# The kinds of reference searchable_refs yields: the message's own ids (a report's, return's or cancellation's
# are its original's), then, for a message about an earlier payment, the ids it names as the original's.
SEARCH_KEYS = ("end_to_end_id", "uetr", "tx_id", "instr_id", "pmt_inf_id")
ORIGINAL_KEYS = ("original_msg_id", "original_end_to_end_id", "original_uetr", "original_msg_e2e")


class TxRefs(NamedTuple):
    """One transaction: CdtTrfTxInf (pacs.008, pacs.009, pain.001), DrctDbtTxInf (pain.008), TxInf (pacs.004,
    pacs.028, camt.056), or TxInfAndSts (pacs.002, pain.002, camt.029) with the Orgnl* ids it is about.

    Amounts: IntrBkSttlmAmt (pacs.008/.009), Amt/InstdAmt (pain.001), InstdAmt (pain.008), RtrdIntrBkSttlmAmt
    (pacs.004), OrgnlIntrBkSttlmAmt (camt.056, camt.029). In pain.008 the creditor agent comes from the PmtInf
    and the debtor agent from the transaction.

    Agent BICs (`*_agt_bic`) are None when the agent is absent and "" when it is present without a BICFI
    (a clearing member id only, say), so a check of who may act as an agent never mistakes one for the other.
    `*_mmb_id` are the clearing-system member ids of the same agents (FinInstnId/ClrSysMmbId/MmbId), None when
    absent. `path` is the transaction element's location in the form validate.PathNamer uses
    (`/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]`, index only when the name repeats), so a finding whose path
    starts with it concerns this transaction. In pain.001 the debtor agent comes from the enclosing PmtInf.
    """

    # `index` shadows tuple.index (a method): mypy objects, Python does not, and the name is public API.
    index: int  # type: ignore[assignment]  # 0-based, in document order over the whole message
    path: str
    end_to_end_id: str | None = None
    tx_id: str | None = None
    instr_id: str | None = None
    uetr: str | None = None
    amount: Decimal | None = None  # IntrBkSttlmAmt (pacs.008), Amt/InstdAmt (pain.001); None: absent/bad
    amount_text: str | None = None
    amount_path: str | None = None
    currency: str | None = None
    instg_agt_bic: str | None = None
    instd_agt_bic: str | None = None
    dbtr_agt_bic: str | None = None
    cdtr_agt_bic: str | None = None
    pmt_inf_id: str | None = None
    pmt_inf_index: int | None = None  # index into MessageRefs.payment_infos (pain.001 / pain.002)
    status: str | None = None  # TxSts, status reports only
    # FinInstnId/ClrSysMmbId/MmbId of the agent (None when the agent or its member id is absent): routing by
    # clearing member (an ABA routing number, a sort code) where no BIC identifies the bank.
    instd_agt_mmb_id: str | None = None
    cdtr_agt_mmb_id: str | None = None
    # Messages about an earlier payment (pacs.002, pain.002, pacs.004, pacs.028, camt.056, camt.029): the ids of
    # the original, for correlation. original_msg_id / _nm_id come from the transaction's own OrgnlGrpInf, else
    # from the group it sits in (OrgnlGrpInf, Undrlyg/OrgnlGrpInfAndCxl, CxlDtls/OrgnlGrpInfAndSts,
    # OrgnlGrpInfAndSts). The plain id fields above repeat the Orgnl* ids, so searchable_refs indexes a return or
    # a cancellation under the payment's EndToEndId and UETR.
    own_id: str | None = None  # RtrId, StsReqId, CxlId, CxlStsId or StsId: this message's id for the transaction
    original_msg_id: str | None = None
    original_msg_nm_id: str | None = None
    original_end_to_end_id: str | None = None
    original_tx_id: str | None = None
    original_instr_id: str | None = None
    original_uetr: str | None = None
    mandate_id: str | None = None  # pain.008 DrctDbtTx/MndtRltdInf/MndtId
    reasons: tuple[str, ...] = ()  # StsRsnInf/Rsn/Cd of a status report's transaction


class PmtInfRefs(NamedTuple):
    """One pain.001 / pain.008 PmtInf (or pain.002 OrgnlPmtInfAndSts)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, as in TxRefs
    path: str
    pmt_inf_id: str | None
    nb_of_txs: str | None
    ctrl_sum: Decimal | None
    ctrl_sum_text: str | None
    dbtr_agt_bic: str | None
    tx_count: int
    cdtr_agt_bic: str | None = None  # pain.008 PmtInf/CdtrAgt (the creditor's bank, which collects)


class MessageRefs(NamedTuple):
    """What switchd needs to know about a message without walking it again.

    Numbers keep their text (`nb_of_txs`, `*_text`) because the rules compare what the sender wrote; `Decimal`
    values are None when the text is absent or not a number. `original_msg_id` / `original_msg_nm_id` name the
    message this one is about: OrgnlGrpInfAndSts (pacs.002, pain.002), OrgnlGrpInf (pacs.004, the first one in
    pacs.028), the first Undrlyg/OrgnlGrpInfAndCxl (camt.056), the first CxlDtls/OrgnlGrpInfAndSts (camt.029),
    else the first transaction's OrgnlGrpInf; each transaction carries its own (TxRefs.original_*).
    `group_status` is a status report's GrpSts.

    camt.056 / camt.029 have no GrpHdr: msg_id and cre_dt_tm come from Assgnmt/Id and Assgnmt/CreDtTm,
    instg_agt_bic / instd_agt_bic from Assgnmt/Assgnr/Agt and Assgnmt/Assgne/Agt ("" when the assigner or
    assignee is a party, not an agent), nb_of_txs / ctrl_sum from camt.056 CtrlData.
    """

    message_id: str  # the catalogue id, e.g. "pacs.008.001.08"
    path: str  # the message root: "/Document/FIToFICstmrCdtTrf"
    msg_id: str | None
    cre_dt_tm: str | None
    nb_of_txs: str | None
    ctrl_sum: Decimal | None
    ctrl_sum_text: str | None
    ttl_amount: Decimal | None  # GrpHdr/TtlIntrBkSttlmAmt (pacs.008/.009), TtlRtrdIntrBkSttlmAmt (pacs.004)
    ttl_amount_text: str | None
    ttl_ccy: str | None
    instg_agt_bic: str | None  # GrpHdr/InstgAgt
    instd_agt_bic: str | None  # GrpHdr/InstdAgt
    payment_infos: tuple[PmtInfRefs, ...]
    transactions: tuple[TxRefs, ...]
    original_msg_id: str | None = None
    original_msg_nm_id: str | None = None
    group_status: str | None = None
    instd_agt_mmb_id: str | None = None  # GrpHdr/InstdAgt/FinInstnId/ClrSysMmbId/MmbId


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _amount(el: etree._Element | None, path: str) -> tuple[Decimal | None, str | None, str | None, str | None]:
    """(value, text as written, path, Ccy) of an amount element at `path`; all None when it is absent."""
    if el is None:
        return None, None, None, None
    text = _text(el)
    return _decimal(text), text, path, el.get("Ccy")


def _text(el: etree._Element | None) -> str | None:
    # Schema-valid ids carry no surrounding whitespace; strip anyway so a stray newline never splits a key.
    if el is None:
        return None
    text = el.text
    if text is None:
        return None
    return text.strip() or None


# Which children each walk keeps: local names, in the order of the slots _pick fills (see the unpacking at each
# use). The last child of a name wins, as when the XSD was not enforced.
_GROUP = ("MsgId", "CreDtTm", "NbOfTxs", "CtrlSum", "TtlIntrBkSttlmAmt", "InstgAgt", "InstdAgt")
_PMT_ID = ("EndToEndId", "TxId", "InstrId", "UETR")
_PACS_TX = ("PmtId", "IntrBkSttlmAmt", "DbtrAgt", "CdtrAgt", "InstgAgt", "InstdAgt")
# CdtTrfTxInf is not a field: it is how a PmtInf's transactions are told from its fields in the same loop.
_PAIN_PMT_INF = ("PmtInfId", "NbOfTxs", "CtrlSum", "DbtrAgt", "CdtTrfTxInf")
_PAIN_TX = ("PmtId", "Amt", "CdtrAgt")
_REPORT_TX = ("OrgnlEndToEndId", "OrgnlTxId", "OrgnlInstrId", "OrgnlUETR", "TxSts", "InstgAgt", "InstdAgt")
_REPORT_GROUP = ("OrgnlMsgId", "OrgnlMsgNmId", "GrpSts")
_REPORT_PMT_INF = ("OrgnlPmtInfId", "OrgnlNbOfTxs", "OrgnlCtrlSum")
# pacs.004 names its total differently; the slot order is _GROUP's.
_RETURN_GROUP = ("MsgId", "CreDtTm", "NbOfTxs", "CtrlSum", "TtlRtrdIntrBkSttlmAmt", "InstgAgt", "InstdAgt")
_ASSIGNMENT = ("Id", "CreDtTm", "Assgnr", "Assgne")
_CTRL_DATA = ("NbOfTxs", "CtrlSum")
_ORIGINAL_GROUP = ("OrgnlMsgId", "OrgnlMsgNmId")
# A transaction that refers to an original: the slots every such message shares, then its own id, amount, status.
_REFERRING_TX = ("OrgnlGrpInf", "OrgnlInstrId", "OrgnlEndToEndId", "OrgnlTxId", "OrgnlUETR", "InstgAgt", "InstdAgt")
_PAIN008_PMT_INF = ("PmtInfId", "NbOfTxs", "CtrlSum", "CdtrAgt", "DrctDbtTxInf")
_PAIN008_TX = ("PmtId", "InstdAmt", "DrctDbtTx", "DbtrAgt")


class _Referring(NamedTuple):
    """How one message type that refers to earlier payments lays out its transactions (see _referring)."""

    group: str  # "GrpHdr" or "Assgnmt"
    original_group: str | None  # a direct child of the root naming the original message (pacs.004, pacs.028)
    container: str | None  # the repeated child holding transactions (camt.056 Undrlyg, camt.029 CxlDtls)
    container_original: str | None  # the container's original group (OrgnlGrpInfAndCxl, OrgnlGrpInfAndSts)
    tx: str  # the transaction element
    own_id: str
    amount: str | None
    status: str | None


_REFERRING: dict[str, _Referring] = {
    "pacs.004": _Referring("GrpHdr", "OrgnlGrpInf", None, None, "TxInf", "RtrId", "RtrdIntrBkSttlmAmt", None),
    "pacs.028": _Referring("GrpHdr", "OrgnlGrpInf", None, None, "TxInf", "StsReqId", None, None),
    "camt.056": _Referring(
        "Assgnmt", None, "Undrlyg", "OrgnlGrpInfAndCxl", "TxInf", "CxlId", "OrgnlIntrBkSttlmAmt", None
    ),
    "camt.029": _Referring(
        "Assgnmt", None, "CxlDtls", "OrgnlGrpInfAndSts", "TxInfAndSts", "CxlStsId", "OrgnlIntrBkSttlmAmt", "TxCxlSts"
    ),
}

# Plain dicts, private to this module: a MappingProxyType's get() costs twice a dict's, and it runs per child.
_Table = dict[str, int]


class _Tags:
    """Clark-notation tags (`{ns}Name`) of one namespace, and the walk tables (tag -> slot) keyed by them.

    Comparing `child.tag` with prepared strings is the cheapest exact, namespace-aware test lxml offers
    (`find()` goes through ElementPath at ~3 us a call, `iterchildren(tag)` sets up a matcher at ~1 us).
    """

    def __init__(self, ns: str) -> None:
        q = "{" + ns + "}"
        self.q = q
        self.GrpHdr = q + "GrpHdr"
        self.CdtTrfTxInf = q + "CdtTrfTxInf"
        self.FinInstnId = q + "FinInstnId"
        self.BICFI = q + "BICFI"
        self.ClrSysMmbId = q + "ClrSysMmbId"
        self.MmbId = q + "MmbId"
        self.PmtInf = q + "PmtInf"
        self.InstdAmt = q + "InstdAmt"
        self.OrgnlGrpInfAndSts = q + "OrgnlGrpInfAndSts"
        self.TxInfAndSts = q + "TxInfAndSts"
        self.OrgnlPmtInfAndSts = q + "OrgnlPmtInfAndSts"
        self.group = self._table(_GROUP)
        self.pmt_id = self._table(_PMT_ID)
        self.pacs_tx = self._table(_PACS_TX)
        self.pain_pmt_inf = self._table(_PAIN_PMT_INF)
        self.pain_tx = self._table(_PAIN_TX)
        self.report_tx = self._table(_REPORT_TX)
        self.report_group = self._table(_REPORT_GROUP)
        self.report_pmt_inf = self._table(_REPORT_PMT_INF)
        self.return_group = self._table(_RETURN_GROUP)
        self.assignment = self._table(_ASSIGNMENT)
        self.ctrl_data = self._table(_CTRL_DATA)
        self.original_group = self._table(_ORIGINAL_GROUP)
        self.pain008_pmt_inf = self._table(_PAIN008_PMT_INF)
        self.pain008_tx = self._table(_PAIN008_TX)
        self.Agt = q + "Agt"
        self.CtrlData = q + "CtrlData"
        self.StsId = q + "StsId"
        self.OrgnlGrpInf = q + "OrgnlGrpInf"
        self.MndtRltdInf = q + "MndtRltdInf"
        self.MndtId = q + "MndtId"
        self.StsRsnInf = q + "StsRsnInf"
        self.Rsn = q + "Rsn"
        self.Cd = q + "Cd"
        # Per referring message type: (tags of the layout, the transaction table). Built for every namespace
        # (a few us once per message definition); only the family's own entry is used.
        self.referring = {
            family: (
                _Referring(*(q + v if v else None for v in spec)),  # type: ignore[arg-type]
                self._table((*_REFERRING_TX, spec.own_id, spec.amount or "-", spec.status or "-")),
            )
            for family, spec in _REFERRING.items()
        }

    def _table(self, names: tuple[str, ...]) -> _Table:
        return {self.q + name: i for i, name in enumerate(names)}


class _Layout(NamedTuple):
    """What extract_refs derives from a MessageDef alone (MessageDef.family and .namespace are computed
    properties: ~0.7 us a call)."""

    tags: _Tags
    family: str
    path: str  # "/Document/FIToFICstmrCdtTrf"
    body_tag: str  # "{ns}FIToFICstmrCdtTrf"


# A _Tags costs ~10 us to build, a fifth of a one-transaction walk: build each once per message definition, on
# first use. Keys come from the catalogue (a few dozen definitions); the cap only guards against a caller
# inventing definitions without end, past which they are built per call.
_LAYOUTS: dict[tuple[str, str], _Layout] = {}
_MAX_LAYOUTS = 256


def _layout(defn: MessageDef) -> _Layout:
    key = (defn.id, defn.root)
    layout = _LAYOUTS.get(key)
    if layout is None:
        tags = _Tags(NAMESPACE_PREFIX + defn.id)  # = defn.namespace
        layout = _Layout(tags, defn.family, f"/Document/{defn.root}", tags.q + defn.root)
        if len(_LAYOUTS) < _MAX_LAYOUTS:
            _LAYOUTS[key] = layout
    return layout


_Slots = list[etree._Element | None]


def _pick(el: etree._Element, table: _Table, n: int) -> _Slots:
    """The children of `el` named in `table`, each in its slot (the last one wins if the XSD was not enforced)."""
    found: _Slots = [None] * n
    get = table.get
    for child in el[:]:  # a list of the children is cheaper than lxml's child iterator (~0.3 us less a parent)
        slot = get(child.tag)  # comments and PIs have a function as tag: never in a table
        if slot is not None:
            found[slot] = child
    return found


def _child(el: etree._Element, tag: str) -> etree._Element | None:
    for child in el:
        if child.tag == tag:
            return child
    return None


def _bic(agent: etree._Element | None, t: _Tags) -> str | None:
    """An agent's FinInstnId/BICFI: None when there is no agent, "" when it is not identified by a BICFI."""
    if agent is None:
        return None
    # Six agents in a one-transaction pacs.008. The XSD puts FinInstnId first in an agent and BICFI first in it:
    # look there by index (~0.1 us; starting a child iterator costs ~0.3 us), else walk as _child would.
    try:
        fin = agent[0]
        first = fin[0] if fin.tag == t.FinInstnId else None
    except IndexError:
        first = None
    if first is None or first.tag != t.BICFI:
        fin = _child(agent, t.FinInstnId)
        first = _child(fin, t.BICFI) if fin is not None else None
        if first is None:
            return ""
    text = first.text
    return text.strip() if text is not None else ""


def _bic_mmb(agent: etree._Element | None, t: _Tags) -> tuple[str | None, str | None]:
    """(BICFI as _bic reads it, ClrSysMmbId/MmbId or None) of an agent, reading its FinInstnId once.

    Only for the agents whose member id is wanted (instructed, creditor): the others keep the cheaper _bic.
    """
    if agent is None:
        return None, None
    # FinInstnId is an agent's first child by the XSD: look there first, as _bic does.
    fin: etree._Element | None = agent[0] if len(agent) else None
    if fin is None or fin.tag != t.FinInstnId:
        fin = _child(agent, t.FinInstnId)
        if fin is None:
            return "", None
    bic = ""
    mmb = None
    bicfi_tag, mmb_tag = t.BICFI, t.ClrSysMmbId
    # FinInstnId has at most six children and the XSD puts BICFI then ClrSysMmbId first: one pass, no early exit
    # so that an off-order document (the XSD not enforced) reads the same as _bic reads it.
    for child in fin[:]:
        tag = child.tag
        if tag == bicfi_tag:
            text = child.text
            bic = text.strip() if text is not None else ""
        elif tag == mmb_tag:
            mmb = _text(_child(child, t.MmbId))
    return bic, mmb


def _indexed(base: str, name: str, i: int, n: int) -> str:
    return f"{base}/{name}[{i + 1}]" if n > 1 else f"{base}/{name}"


def extract_refs(defn: MessageDef, document: etree._Element) -> MessageRefs:
    """Read the references of `document` (the `Document` element of message `defn`).

    Handles pacs.008, pacs.009, pain.001 and pain.008 fully; pacs.002 / pain.002 (report ids, statuses and the
    Orgnl* ids of the transactions reported on); pacs.004, pacs.028, camt.056 and camt.029 (their transactions
    and the original ids each refers to). For any other message only the GrpHdr fields are read. Never raises on
    missing or malformed elements: a value that is not there is None (the XSD and the rules say why).
    """
    layout = _layout(defn)
    t, path, family = layout.tags, layout.path, layout.family
    body = _child(document, layout.body_tag)
    if body is None:
        return _message(defn, path, None, t, (), ())
    if family == "pacs.008":
        return _pacs008(defn, body, t, path)
    if family == "pain.001":
        return _pain001(defn, body, t, path)
    if family in ("pacs.002", "pain.002"):
        return _report(defn, body, t, path)
    if family == "pacs.009":  # the same GrpHdr and CdtTrfTxInf elements as pacs.008, for what refs reads
        return _pacs008(defn, body, t, path)
    if family == "pain.008":
        return _pain008(defn, body, t, path)
    if family in _REFERRING:
        return _referring(defn, body, t, path, family)
    return _message(defn, path, _child(body, t.GrpHdr), t, (), ())


def _message(
    defn: MessageDef,
    path: str,
    grp: etree._Element | None,
    t: _Tags,
    pmt_infs: tuple[PmtInfRefs, ...],
    txs: tuple[TxRefs, ...],
    report: tuple[str | None, str | None, str | None] = (None, None, None),
    group_table: _Table | None = None,
) -> MessageRefs:
    msg_id, cre_dt_tm, nb_of_txs, ctrl_sum, ttl, instg, instd = (
        _pick(grp, group_table or t.group, len(_GROUP)) if grp is not None else (None,) * len(_GROUP)
    )
    ctrl_sum_text = _text(ctrl_sum)
    ttl_text = _text(ttl)
    instd_bic, instd_mmb = _bic_mmb(instd, t)
    return MessageRefs(  # positional, as TxRefs in _pacs008
        defn.id,
        path,
        _text(msg_id),
        _text(cre_dt_tm),
        _text(nb_of_txs),
        _decimal(ctrl_sum_text),
        ctrl_sum_text,
        _decimal(ttl_text),
        ttl_text,
        ttl.get("Ccy") if ttl is not None else None,
        _bic(instg, t),
        instd_bic,
        pmt_infs,
        txs,
        *report,
        instd_mmb,
    )


def _split(body: etree._Element, t: _Tags, repeated: str) -> tuple[etree._Element | None, list[etree._Element]]:
    """(the GrpHdr, the repeated children named `repeated`) of a message root, in one pass."""
    grp = None
    items = []
    grp_tag = t.GrpHdr
    for child in body[:]:  # a list: see _pick
        tag = child.tag
        if tag == repeated:
            items.append(child)
        elif tag == grp_tag:
            grp = child  # the last one, as the pick it feeds
    return grp, items


def _ids(pmt_id: etree._Element | None, t: _Tags) -> tuple[str | None, str | None, str | None, str | None]:
    """(EndToEndId, TxId, InstrId, UETR) of a PmtId."""
    if pmt_id is None:
        return None, None, None, None
    e2e, tx_id, instr_id, uetr = _pick(pmt_id, t.pmt_id, len(_PMT_ID))
    return _text(e2e), _text(tx_id), _text(instr_id), _text(uetr)


def _pacs008(defn: MessageDef, body: etree._Element, t: _Tags, path: str) -> MessageRefs:
    grp, tx_els = _split(body, t, t.CdtTrfTxInf)
    n = len(tx_els)
    table, width = t.pacs_tx, len(_PACS_TX)
    txs = []
    for i, el in enumerate(tx_els):
        pmt_id, amount_el, dbtr, cdtr, instg, instd = _pick(el, table, width)
        e2e, tx_id, instr_id, uetr = _ids(pmt_id, t)
        instd_bic, instd_mmb = _bic_mmb(instd, t)
        cdtr_bic, cdtr_mmb = _bic_mmb(cdtr, t)
        tx_path = _indexed(path, "CdtTrfTxInf", i, n)
        amount, amount_text, amount_path, currency = _amount(amount_el, tx_path + "/IntrBkSttlmAmt")
        # Positional: a NamedTuple built by keyword costs ~1 us, by position ~0.4 us. The order is TxRefs'.
        txs.append(
            TxRefs(
                i,
                tx_path,
                e2e,
                tx_id,
                instr_id,
                uetr,
                amount,
                amount_text,
                amount_path,
                currency,
                _bic(instg, t),
                instd_bic,
                _bic(dbtr, t),
                cdtr_bic,
                None,
                None,
                None,
                instd_mmb,
                cdtr_mmb,
            )
        )
    return _message(defn, path, grp, t, (), tuple(txs))


def _pain001(defn: MessageDef, body: etree._Element, t: _Tags, path: str) -> MessageRefs:
    grp, pi_els = _split(body, t, t.PmtInf)
    n_pi = len(pi_els)
    pmt_infs = []
    txs: list[TxRefs] = []
    pi_table, tx_slot = t.pain_pmt_inf, _PAIN_PMT_INF.index("CdtTrfTxInf")
    tx_table, tx_width = t.pain_tx, len(_PAIN_TX)
    instd_amt = t.InstdAmt
    for p, pi in enumerate(pi_els):
        pi_path = _indexed(path, "PmtInf", p, n_pi)
        fields: _Slots = [None] * len(_PAIN_PMT_INF)
        tx_els = []
        for child in pi[:]:  # a list: see _pick
            slot = pi_table.get(child.tag)
            if slot == tx_slot:
                tx_els.append(child)
            elif slot is not None:
                fields[slot] = child
        pmt_inf_el, nb_el, ctrl_el, dbtr_el, _ = fields
        pmt_inf_id = _text(pmt_inf_el)
        dbtr_bic = _bic(dbtr_el, t)
        ctrl = _text(ctrl_el)
        n = len(tx_els)
        pmt_infs.append(PmtInfRefs(p, pi_path, pmt_inf_id, _text(nb_el), _decimal(ctrl), ctrl, dbtr_bic, n))
        for i, el in enumerate(tx_els):
            pmt_id, amt, cdtr = _pick(el, tx_table, tx_width)
            e2e, _, instr_id, uetr = _ids(pmt_id, t)  # a TxId in a pain.001 is not reported
            # EqvtAmt (an amount in another currency, converted by the agent) is not the transfer amount
            amount_el = _child(amt, instd_amt) if amt is not None else None
            tx_path = _indexed(pi_path, "CdtTrfTxInf", i, n)
            cdtr_bic, cdtr_mmb = _bic_mmb(cdtr, t)
            amount, amount_text, amount_path, currency = _amount(amount_el, tx_path + "/Amt/InstdAmt")
            # Positional, as in _pacs008; no TxId, InstgAgt or InstdAgt in pain.001.
            txs.append(
                TxRefs(
                    len(txs),
                    tx_path,
                    e2e,
                    None,
                    instr_id,
                    uetr,
                    amount,
                    amount_text,
                    amount_path,
                    currency,
                    None,
                    None,
                    dbtr_bic,
                    cdtr_bic,
                    pmt_inf_id,
                    p,
                    None,
                    None,
                    cdtr_mmb,
                )
            )
    return _message(defn, path, grp, t, tuple(pmt_infs), tuple(txs))


def _original_group(
    el: etree._Element | None, t: _Tags, default: tuple[str | None, str | None]
) -> tuple[str | None, str | None]:
    """(OrgnlMsgId, OrgnlMsgNmId) of an original-group element, else `default`."""
    if el is None:
        return default
    msg_id, nm_id = _pick(el, t.original_group, len(_ORIGINAL_GROUP))
    return _text(msg_id), _text(nm_id)


def _report_tx(
    el: etree._Element,
    t: _Tags,
    index: int,
    path: str,
    pmt_inf: PmtInfRefs | None,
    group_original: tuple[str | None, str | None] = (None, None),
) -> TxRefs:
    e2e, tx_id, instr_id, uetr, status, instg, instd = _pick(el, t.report_tx, len(_REPORT_TX))
    instd_bic, instd_mmb = _bic_mmb(instd, t)
    e2e_text, tx_id_text, instr_text, uetr_text = _text(e2e), _text(tx_id), _text(instr_id), _text(uetr)
    own = orgnl = None
    for child in el[:2]:  # StsId and OrgnlGrpInf come first, by the XSD
        if child.tag == t.StsId:
            own = _text(child)
        elif child.tag == t.OrgnlGrpInf:
            orgnl = child
    orig_msg_id, orig_nm_id = _original_group(orgnl, t, group_original)
    # Read here, in the worker that parsed the report, so correlation never parses it again.
    reasons = tuple(
        code
        for info in el
        if info.tag == t.StsRsnInf
        for rsn in info
        if rsn.tag == t.Rsn
        for cd in rsn
        if cd.tag == t.Cd and (code := _text(cd))
    )
    return TxRefs(
        index=index,
        path=path,
        end_to_end_id=e2e_text,
        tx_id=tx_id_text,
        instr_id=instr_text,
        uetr=uetr_text,
        instg_agt_bic=_bic(instg, t),
        instd_agt_bic=instd_bic,
        status=_text(status),
        pmt_inf_id=pmt_inf.pmt_inf_id if pmt_inf is not None else None,
        pmt_inf_index=pmt_inf.index if pmt_inf is not None else None,
        instd_agt_mmb_id=instd_mmb,
        own_id=own,
        original_msg_id=orig_msg_id,
        original_msg_nm_id=orig_nm_id,
        original_end_to_end_id=e2e_text,
        original_tx_id=tx_id_text,
        original_instr_id=instr_text,
        original_uetr=uetr_text,
        reasons=reasons,
    )


def _report(defn: MessageDef, body: etree._Element, t: _Tags, path: str) -> MessageRefs:
    """pacs.002 / pain.002: the report's own GrpHdr, and the ids of what it reports on."""
    grp = orgnl = None
    tx_els: list[etree._Element] = []
    pi_els: list[etree._Element] = []
    for child in body:
        tag = child.tag
        if tag == t.TxInfAndSts:
            tx_els.append(child)
        elif tag == t.OrgnlPmtInfAndSts:
            pi_els.append(child)
        elif tag == t.GrpHdr:
            grp = child  # the last one, as the pick it feeds
        elif tag == t.OrgnlGrpInfAndSts and orgnl is None:
            orgnl = child  # pacs.002 allows several; the first names the message
    report: tuple[str | None, str | None, str | None] = (None, None, None)
    if orgnl is not None:
        msg_id, nm_id, status = _pick(orgnl, t.report_group, len(_REPORT_GROUP))
        report = (_text(msg_id), _text(nm_id), _text(status))
    txs: list[TxRefs] = []
    n = len(tx_els)
    group_original = report[:2]
    for i, el in enumerate(tx_els):
        txs.append(_report_tx(el, t, len(txs), _indexed(path, "TxInfAndSts", i, n), None, group_original))
    pmt_infs = []
    n_pi = len(pi_els)
    for p, pi in enumerate(pi_els):
        pi_path = _indexed(path, "OrgnlPmtInfAndSts", p, n_pi)
        pi_tx = [c for c in pi if c.tag == t.TxInfAndSts]
        pmt_inf_el, nb_el, ctrl_el = _pick(pi, t.report_pmt_inf, len(_REPORT_PMT_INF))
        ctrl = _text(ctrl_el)
        ref = PmtInfRefs(p, pi_path, _text(pmt_inf_el), _text(nb_el), _decimal(ctrl), ctrl, None, len(pi_tx))
        pmt_infs.append(ref)
        for i, el in enumerate(pi_tx):
            tx_path = _indexed(pi_path, "TxInfAndSts", i, len(pi_tx))
            txs.append(_report_tx(el, t, len(txs), tx_path, ref, group_original))
    return _message(defn, path, grp, t, tuple(pmt_infs), tuple(txs), report)


def _pain008(defn: MessageDef, body: etree._Element, t: _Tags, path: str) -> MessageRefs:
    """pain.008: PmtInf (with the creditor agent) and their DrctDbtTxInf (with the debtor agent and mandate)."""
    grp, pi_els = _split(body, t, t.PmtInf)
    n_pi = len(pi_els)
    pmt_infs = []
    txs: list[TxRefs] = []
    pi_table, tx_slot = t.pain008_pmt_inf, _PAIN008_PMT_INF.index("DrctDbtTxInf")
    for p, pi in enumerate(pi_els):
        pi_path = _indexed(path, "PmtInf", p, n_pi)
        fields: _Slots = [None] * len(_PAIN008_PMT_INF)
        tx_els = []
        for child in pi[:]:
            slot = pi_table.get(child.tag)
            if slot == tx_slot:
                tx_els.append(child)
            elif slot is not None:
                fields[slot] = child
        pmt_inf_el, nb_el, ctrl_el, cdtr_el, _ = fields
        pmt_inf_id = _text(pmt_inf_el)
        cdtr_bic, cdtr_mmb = _bic_mmb(cdtr_el, t)
        ctrl = _text(ctrl_el)
        n = len(tx_els)
        pmt_infs.append(PmtInfRefs(p, pi_path, pmt_inf_id, _text(nb_el), _decimal(ctrl), ctrl, None, n, cdtr_bic))
        for i, el in enumerate(tx_els):
            pmt_id, amount_el, ddt, dbtr = _pick(el, t.pain008_tx, len(_PAIN008_TX))
            e2e, _, instr_id, uetr = _ids(pmt_id, t)
            tx_path = _indexed(pi_path, "DrctDbtTxInf", i, n)
            amount, amount_text, amount_path, currency = _amount(amount_el, tx_path + "/InstdAmt")
            mndt = _child(ddt, t.MndtRltdInf) if ddt is not None else None
            mandate_id = _text(_child(mndt, t.MndtId)) if mndt is not None else None
            txs.append(
                TxRefs(
                    index=len(txs),
                    path=tx_path,
                    end_to_end_id=e2e,
                    instr_id=instr_id,
                    uetr=uetr,
                    amount=amount,
                    amount_text=amount_text,
                    amount_path=amount_path,
                    currency=currency,
                    dbtr_agt_bic=_bic(dbtr, t),
                    cdtr_agt_bic=cdtr_bic,
                    pmt_inf_id=pmt_inf_id,
                    pmt_inf_index=p,
                    cdtr_agt_mmb_id=cdtr_mmb,
                    mandate_id=mandate_id,
                )
            )
    return _message(defn, path, grp, t, tuple(pmt_infs), tuple(txs))


def _referring(defn: MessageDef, body: etree._Element, t: _Tags, path: str, family: str) -> MessageRefs:
    """pacs.004, pacs.028, camt.056, camt.029: transactions that each name an original payment (see _REFERRING)."""
    spec, table = t.referring[family]
    width = len(_REFERRING_TX) + 3
    grp = ctrl = None
    first_original: tuple[str | None, str | None] | None = None
    # (container path or the root's, the container's original group, its transaction elements)
    groups: list[tuple[str, tuple[str | None, str | None], list[etree._Element]]] = []
    root_txs: list[etree._Element] = []
    containers: list[etree._Element] = []
    for child in body[:]:
        tag = child.tag
        if tag == spec.tx:
            root_txs.append(child)
        elif tag == spec.container:
            containers.append(child)
        elif tag == spec.group:
            grp = child
        elif tag == spec.original_group and first_original is None:
            first_original = _original_group(child, t, (None, None))
        elif tag == t.CtrlData:
            ctrl = child
    if root_txs:
        groups.append((path, first_original or (None, None), root_txs))
    n_c = len(containers)
    for c, container in enumerate(containers):
        orgnl = None
        tx_els = []
        for child in container[:]:
            if child.tag == spec.tx:
                tx_els.append(child)
            elif child.tag == spec.container_original:
                orgnl = child
        original = _original_group(orgnl, t, (None, None))
        if first_original is None and orgnl is not None:
            first_original = original
        assert spec.container is not None
        groups.append((_indexed(path, spec.container[len(t.q) :], c, n_c), original, tx_els))
    tx_name = spec.tx[len(t.q) :]
    amount_name = spec.amount[len(t.q) :] if spec.amount else None
    txs: list[TxRefs] = []
    for base, original, tx_els in groups:
        n = len(tx_els)
        for i, el in enumerate(tx_els):
            orgnl, instr_id, e2e, tx_id, uetr, instg, instd, own, amount_el, status = _pick(el, table, width)
            tx_path = _indexed(base, tx_name, i, n)
            orig_msg_id, orig_nm_id = _original_group(orgnl, t, original)
            if first_original is None and orgnl is not None:
                first_original = (orig_msg_id, orig_nm_id)
            amount, amount_text, amount_path, currency = _amount(amount_el, f"{tx_path}/{amount_name}")
            instd_bic, instd_mmb = _bic_mmb(instd, t)
            e2e_text, tx_id_text, instr_text, uetr_text = _text(e2e), _text(tx_id), _text(instr_id), _text(uetr)
            txs.append(
                TxRefs(
                    index=len(txs),
                    path=tx_path,
                    end_to_end_id=e2e_text,
                    tx_id=tx_id_text,
                    instr_id=instr_text,
                    uetr=uetr_text,
                    amount=amount,
                    amount_text=amount_text,
                    amount_path=amount_path,
                    currency=currency,
                    instg_agt_bic=_bic(instg, t),
                    instd_agt_bic=instd_bic,
                    status=_text(status),
                    instd_agt_mmb_id=instd_mmb,
                    own_id=_text(own),
                    original_msg_id=orig_msg_id,
                    original_msg_nm_id=orig_nm_id,
                    original_end_to_end_id=e2e_text,
                    original_tx_id=tx_id_text,
                    original_instr_id=instr_text,
                    original_uetr=uetr_text,
                )
            )
    report = (*(first_original or (None, None)), None)
    if spec.group == t.GrpHdr:
        table_group = t.return_group if family == "pacs.004" else None
        return _message(defn, path, grp, t, (), tuple(txs), report, table_group)
    return _assignment(defn, path, grp, ctrl, t, tuple(txs), report)


def _assignment(
    defn: MessageDef,
    path: str,
    assignment: etree._Element | None,
    ctrl: etree._Element | None,
    t: _Tags,
    txs: tuple[TxRefs, ...],
    report: tuple[str | None, str | None, str | None],
) -> MessageRefs:
    """MessageRefs of a camt.056 / camt.029: the Assgnmt stands for the GrpHdr."""
    msg_id, cre_dt_tm, assigner, assignee = (
        _pick(assignment, t.assignment, len(_ASSIGNMENT)) if assignment is not None else (None,) * 4
    )
    nb_el, ctrl_el = _pick(ctrl, t.ctrl_data, len(_CTRL_DATA)) if ctrl is not None else (None, None)
    ctrl_text = _text(ctrl_el)
    instd_bic, instd_mmb = _bic_mmb(_party_agent(assignee, t), t)
    return MessageRefs(
        message_id=defn.id,
        path=path,
        msg_id=_text(msg_id),
        cre_dt_tm=_text(cre_dt_tm),
        nb_of_txs=_text(nb_el),
        ctrl_sum=_decimal(ctrl_text),
        ctrl_sum_text=ctrl_text,
        ttl_amount=None,
        ttl_amount_text=None,
        ttl_ccy=None,
        instg_agt_bic=_bic(_party_agent(assigner, t), t),
        instd_agt_bic=instd_bic,
        payment_infos=(),
        transactions=txs,
        original_msg_id=report[0],
        original_msg_nm_id=report[1],
        group_status=None,
        instd_agt_mmb_id=instd_mmb,
    )


def _party_agent(choice: etree._Element | None, t: _Tags) -> etree._Element | None:
    """The agent of an Assgnr / Assgne (Party40Choice): its Agt, or the choice itself when it holds a party
    (whose missing FinInstnId reads as "": present, without a BIC)."""
    if choice is None:
        return None
    agent = _child(choice, t.Agt)
    return agent if agent is not None else choice


def tx_by_path(txs: Iterable[TxRefs]) -> dict[str, TxRefs]:
    """Transactions by `path`, for `tx_for`."""
    return {tx.path: tx for tx in txs}


def tx_for(path: str | None, by_path: Mapping[str, TxRefs]) -> TxRefs | None:
    """The transaction whose element `path` lies in: a lookup per ancestor step, so a bulk file with many
    findings costs O(findings x depth), not O(findings x transactions)."""
    while path:
        tx = by_path.get(path)
        if tx is not None:
            return tx
        path = path.rpartition("/")[0]
    return None


def searchable_refs(refs: MessageRefs) -> tuple[tuple[str, str], ...]:
    """(kind, value) pairs to index a message by, without duplicates, in document order.

    Kinds are SEARCH_KEYS. For a message about an earlier payment (a return, cancellation request, resolution,
    status request or status report) the plain kinds hold the original transactions' ids, so a search by
    EndToEndId finds the payment and every message about it; the ORIGINAL_KEYS kinds say that those ids are the
    original's, which is what the journal correlates by (journal.related): `original_msg_id` every OrgnlMsgId
    named, `original_end_to_end_id` / `original_uetr` each transaction's, and `original_msg_e2e` the JSON pair
    [OrgnlMsgId, OrgnlEndToEndId] of each transaction that has both (an EndToEndId is unique only within the
    sender's message, so it correlates only together with its MsgId; a UETR is unique on its own).
    """
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []

    def add(kind: str, value: str | None) -> None:
        if value is not None and (kind, value) not in seen:
            seen.add((kind, value))
            out.append((kind, value))

    for p in refs.payment_infos:
        add("pmt_inf_id", p.pmt_inf_id)
    for tx in refs.transactions:
        add("end_to_end_id", tx.end_to_end_id)
        add("uetr", tx.uetr)
        add("tx_id", tx.tx_id)
        add("instr_id", tx.instr_id)
    add("original_msg_id", refs.original_msg_id)
    for tx in refs.transactions:
        add("original_msg_id", tx.original_msg_id)
        add("original_end_to_end_id", tx.original_end_to_end_id)
        add("original_uetr", tx.original_uetr)
        if tx.original_msg_id is not None and tx.original_end_to_end_id is not None:
            add("original_msg_e2e", original_pair(tx.original_msg_id, tx.original_end_to_end_id))
    return tuple(out)


def original_pair(msg_id: str, end_to_end_id: str) -> str:
    """The `original_msg_e2e` value of (OrgnlMsgId, OrgnlEndToEndId): a JSON array, so no id can fake the split."""
    return json.dumps([msg_id, end_to_end_id], separators=(",", ":"), ensure_ascii=False)
