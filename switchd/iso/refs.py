"""The references of an ISO 20022 message: ids, counts, totals, agent BICs, per-transaction ids and amounts.

Pure and on the hot path: one walk over the Document's children comparing namespace-qualified tags, no XPath.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from lxml import etree

from switchd.iso.catalogue import NAMESPACE_PREFIX, MessageDef

# The kinds of reference searchable_refs yields.
SEARCH_KEYS = ("end_to_end_id", "uetr", "tx_id", "instr_id", "pmt_inf_id")


@dataclass(frozen=True, slots=True)
class TxRefs:
    """One transaction (CdtTrfTxInf; in a status report, one TxInfAndSts and the Orgnl* ids it reports on).

    Agent BICs (`*_agt_bic`) are None when the agent is absent and "" when it is present without a BICFI
    (a clearing member id only, say), so a check of who may act as an agent never mistakes one for the other.
    `path` is the transaction element's location in the form validate.named_path uses
    (`/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]`, index only when the name repeats), so a finding whose path
    starts with it concerns this transaction. In pain.001 the debtor agent comes from the enclosing PmtInf.
    """

    index: int  # 0-based, in document order over the whole message
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


@dataclass(frozen=True, slots=True)
class PmtInfRefs:
    """One pain.001 PmtInf (or pain.002 OrgnlPmtInfAndSts)."""

    index: int
    path: str
    pmt_inf_id: str | None
    nb_of_txs: str | None
    ctrl_sum: Decimal | None
    ctrl_sum_text: str | None
    dbtr_agt_bic: str | None
    tx_count: int


@dataclass(frozen=True, slots=True)
class MessageRefs:
    """What switchd needs to know about a message without walking it again.

    Numbers keep their text (`nb_of_txs`, `*_text`) because the rules compare what the sender wrote; `Decimal`
    values are None when the text is absent or not a number. For status reports, `original_*` and
    `group_status` come from OrgnlGrpInfAndSts.
    """

    message_id: str  # the catalogue id, e.g. "pacs.008.001.08"
    path: str  # the message root: "/Document/FIToFICstmrCdtTrf"
    msg_id: str | None
    cre_dt_tm: str | None
    nb_of_txs: str | None
    ctrl_sum: Decimal | None
    ctrl_sum_text: str | None
    ttl_amount: Decimal | None  # pacs.008 GrpHdr/TtlIntrBkSttlmAmt
    ttl_amount_text: str | None
    ttl_ccy: str | None
    instg_agt_bic: str | None  # GrpHdr/InstgAgt
    instd_agt_bic: str | None  # GrpHdr/InstdAgt
    payment_infos: tuple[PmtInfRefs, ...]
    transactions: tuple[TxRefs, ...]
    original_msg_id: str | None = None
    original_msg_nm_id: str | None = None
    group_status: str | None = None


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _text(el: etree._Element | None) -> str | None:
    # Schema-valid ids carry no surrounding whitespace; strip anyway so a stray newline never splits a key.
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


# Tags read one by one (`t.GrpHdr`); the walk tables below cover the rest.
_TAG_NAMES = (
    "GrpHdr",
    "CdtTrfTxInf",
    "FinInstnId",
    "BICFI",
    "PmtInf",
    "InstdAmt",
    "OrgnlGrpInfAndSts",
    "TxInfAndSts",
    "OrgnlPmtInfAndSts",
)

# Which children each walk keeps, by local name -> the key it is stored under.
_GROUP: Mapping[str, str] = MappingProxyType(
    {
        "MsgId": "msg_id",
        "CreDtTm": "cre_dt_tm",
        "NbOfTxs": "nb_of_txs",
        "CtrlSum": "ctrl_sum",
        "TtlIntrBkSttlmAmt": "ttl",
        "InstgAgt": "instg",
        "InstdAgt": "instd",
    }
)
_PMT_ID: Mapping[str, str] = MappingProxyType(
    {"EndToEndId": "e2e", "TxId": "tx_id", "InstrId": "instr_id", "UETR": "uetr"}
)
_PACS_TX: Mapping[str, str] = MappingProxyType(
    {
        "PmtId": "pmt_id",
        "IntrBkSttlmAmt": "amount",
        "DbtrAgt": "dbtr",
        "CdtrAgt": "cdtr",
        "InstgAgt": "instg",
        "InstdAgt": "instd",
    }
)
_PAIN_PMT_INF: Mapping[str, str] = MappingProxyType(
    {"PmtInfId": "pmt_inf_id", "NbOfTxs": "nb_of_txs", "CtrlSum": "ctrl_sum", "DbtrAgt": "dbtr"}
)
_PAIN_TX: Mapping[str, str] = MappingProxyType({"PmtId": "pmt_id", "Amt": "amt", "CdtrAgt": "cdtr"})
_REPORT_TX: Mapping[str, str] = MappingProxyType(
    {
        "OrgnlEndToEndId": "e2e",
        "OrgnlTxId": "tx_id",
        "OrgnlInstrId": "instr_id",
        "OrgnlUETR": "uetr",
        "TxSts": "status",
        "InstgAgt": "instg",
        "InstdAgt": "instd",
    }
)
_REPORT_GROUP: Mapping[str, str] = MappingProxyType(
    {
        "OrgnlMsgId": "original_msg_id",
        "OrgnlMsgNmId": "original_msg_nm_id",
        "GrpSts": "group_status",
    }
)
_REPORT_PMT_INF: Mapping[str, str] = MappingProxyType(
    {"OrgnlPmtInfId": "pmt_inf_id", "OrgnlNbOfTxs": "nb_of_txs", "OrgnlCtrlSum": "ctrl_sum"}
)


class _Tags:
    """Clark-notation tags (`{ns}Name`) of one namespace: `t.GrpHdr`, and the walk tables keyed by them.

    Comparing `child.tag` with prepared strings is the cheapest exact, namespace-aware test lxml offers
    (`find()` goes through ElementPath at ~4 us a call).
    """

    def __init__(self, ns: str) -> None:
        q = "{" + ns + "}"
        self.q = q
        self.__dict__.update({name: q + name for name in _TAG_NAMES})
        self.group = MappingProxyType({q + k: v for k, v in _GROUP.items()})
        self.pmt_id = MappingProxyType({q + k: v for k, v in _PMT_ID.items()})
        self.pacs_tx = MappingProxyType({q + k: v for k, v in _PACS_TX.items()})
        self.pain_pmt_inf = MappingProxyType({q + k: v for k, v in _PAIN_PMT_INF.items()})
        self.pain_tx = MappingProxyType({q + k: v for k, v in _PAIN_TX.items()})
        self.report_tx = MappingProxyType({q + k: v for k, v in _REPORT_TX.items()})
        self.report_group = MappingProxyType({q + k: v for k, v in _REPORT_GROUP.items()})
        self.report_pmt_inf = MappingProxyType({q + k: v for k, v in _REPORT_PMT_INF.items()})

    def __getattr__(self, name: str) -> str:  # reached only for a name missing from _TAG_NAMES: a bug here
        raise AttributeError(name)


# A _Tags costs ~10 us to build, a fifth of a one-transaction walk: build the ones for the versions we ship
# once, at import. Any other version (a catalogue entry added later) still works, built per call.
_PREBUILT: Mapping[str, _Tags] = MappingProxyType(
    {
        NAMESPACE_PREFIX + mid: _Tags(NAMESPACE_PREFIX + mid)
        for mid in ("pacs.008.001.08", "pain.001.001.09", "pacs.002.001.10", "pain.002.001.10")
    }
)

_Found = dict[str, etree._Element]


def _pick(el: etree._Element, table: Mapping[str, str]) -> _Found:
    """The children of `el` named in `table`, by key (the last one wins if the XSD was not enforced)."""
    found: _Found = {}
    for child in el:
        key = table.get(child.tag)  # comments and PIs have a function as tag: never in a table
        if key is not None:
            found[key] = child
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
    fin = _child(agent, t.FinInstnId)
    bic = _text(_child(fin, t.BICFI)) if fin is not None else None
    return "" if bic is None else bic


def _indexed(base: str, name: str, i: int, n: int) -> str:
    return f"{base}/{name}[{i + 1}]" if n > 1 else f"{base}/{name}"


def extract_refs(defn: MessageDef, document: etree._Element) -> MessageRefs:
    """Read the references of `document` (the `Document` element of message `defn`).

    Handles pacs.008 and pain.001 fully, and pacs.002 / pain.002 (report ids, statuses and the Orgnl* ids of
    the transactions reported on); for any other message only the GrpHdr fields are read. Never raises on
    missing or malformed elements: a value that is not there is None (the XSD and the rules say why).
    """
    ns = defn.namespace
    t = _PREBUILT.get(ns) or _Tags(ns)
    path = f"/Document/{defn.root}"
    body = _child(document, t.q + defn.root)
    if body is None:
        return _message(defn, path, {}, t, (), ())
    family = defn.family
    if family == "pacs.008":
        return _pacs008(defn, body, t, path)
    if family == "pain.001":
        return _pain001(defn, body, t, path)
    if family in ("pacs.002", "pain.002"):
        return _report(defn, body, t, path)
    return _message(defn, path, _pick_group(body, t), t, (), ())


def _pick_group(body: etree._Element, t: _Tags) -> _Found:
    grp = _child(body, t.GrpHdr)
    return _pick(grp, t.group) if grp is not None else {}


def _message(
    defn: MessageDef,
    path: str,
    g: _Found,
    t: _Tags,
    pmt_infs: tuple[PmtInfRefs, ...],
    txs: tuple[TxRefs, ...],
    report: Mapping[str, str | None] | None = None,
) -> MessageRefs:
    ctrl_sum = _text(g.get("ctrl_sum"))
    ttl = g.get("ttl")
    ttl_text = _text(ttl)
    report = report or {}
    return MessageRefs(
        message_id=defn.id,
        path=path,
        msg_id=_text(g.get("msg_id")),
        cre_dt_tm=_text(g.get("cre_dt_tm")),
        nb_of_txs=_text(g.get("nb_of_txs")),
        ctrl_sum=_decimal(ctrl_sum),
        ctrl_sum_text=ctrl_sum,
        ttl_amount=_decimal(ttl_text),
        ttl_amount_text=ttl_text,
        ttl_ccy=ttl.get("Ccy") if ttl is not None else None,
        instg_agt_bic=_bic(g.get("instg"), t),
        instd_agt_bic=_bic(g.get("instd"), t),
        payment_infos=pmt_infs,
        transactions=txs,
        original_msg_id=report.get("original_msg_id"),
        original_msg_nm_id=report.get("original_msg_nm_id"),
        group_status=report.get("group_status"),
    )


def _split(body: etree._Element, t: _Tags, repeated: str) -> tuple[_Found, list[etree._Element]]:
    """(GrpHdr fields, the repeated children named `repeated`) of a message root, in one pass."""
    grp: _Found = {}
    items = []
    for child in body:
        tag = child.tag
        if tag == repeated:
            items.append(child)
        elif tag == t.GrpHdr:
            grp = _pick(child, t.group)
    return grp, items


def _pacs008(defn: MessageDef, body: etree._Element, t: _Tags, path: str) -> MessageRefs:
    g, tx_els = _split(body, t, t.CdtTrfTxInf)
    n = len(tx_els)
    txs = []
    for i, el in enumerate(tx_els):
        f = _pick(el, t.pacs_tx)
        pmt_id = f.get("pmt_id")
        ids = _pick(pmt_id, t.pmt_id) if pmt_id is not None else {}
        amount_el = f.get("amount")
        amount_text = _text(amount_el)
        tx_path = _indexed(path, "CdtTrfTxInf", i, n)
        txs.append(
            TxRefs(
                index=i,
                path=tx_path,
                end_to_end_id=_text(ids.get("e2e")),
                tx_id=_text(ids.get("tx_id")),
                instr_id=_text(ids.get("instr_id")),
                uetr=_text(ids.get("uetr")),
                amount=_decimal(amount_text),
                amount_text=amount_text,
                amount_path=tx_path + "/IntrBkSttlmAmt" if amount_el is not None else None,
                currency=amount_el.get("Ccy") if amount_el is not None else None,
                instg_agt_bic=_bic(f.get("instg"), t),
                instd_agt_bic=_bic(f.get("instd"), t),
                dbtr_agt_bic=_bic(f.get("dbtr"), t),
                cdtr_agt_bic=_bic(f.get("cdtr"), t),
            )
        )
    return _message(defn, path, g, t, (), tuple(txs))


def _pain001(defn: MessageDef, body: etree._Element, t: _Tags, path: str) -> MessageRefs:
    g, pi_els = _split(body, t, t.PmtInf)
    n_pi = len(pi_els)
    pmt_infs = []
    txs: list[TxRefs] = []
    for p, pi in enumerate(pi_els):
        pi_path = _indexed(path, "PmtInf", p, n_pi)
        pf: _Found = {}
        tx_els = []
        for child in pi:
            tag = child.tag
            if tag == t.CdtTrfTxInf:
                tx_els.append(child)
            else:
                key = t.pain_pmt_inf.get(tag)
                if key is not None:
                    pf[key] = child
        pmt_inf_id = _text(pf.get("pmt_inf_id"))
        dbtr_bic = _bic(pf.get("dbtr"), t)
        ctrl = _text(pf.get("ctrl_sum"))
        nb = _text(pf.get("nb_of_txs"))
        pmt_infs.append(PmtInfRefs(p, pi_path, pmt_inf_id, nb, _decimal(ctrl), ctrl, dbtr_bic, len(tx_els)))
        n = len(tx_els)
        for i, el in enumerate(tx_els):
            f = _pick(el, t.pain_tx)
            pmt_id = f.get("pmt_id")
            ids = _pick(pmt_id, t.pmt_id) if pmt_id is not None else {}
            amt = f.get("amt")
            # EqvtAmt (an amount in another currency, converted by the agent) is not the transfer amount
            amount_el = _child(amt, t.InstdAmt) if amt is not None else None
            amount_text = _text(amount_el)
            tx_path = _indexed(pi_path, "CdtTrfTxInf", i, n)
            txs.append(
                TxRefs(
                    index=len(txs),
                    path=tx_path,
                    end_to_end_id=_text(ids.get("e2e")),
                    instr_id=_text(ids.get("instr_id")),
                    uetr=_text(ids.get("uetr")),
                    amount=_decimal(amount_text),
                    amount_text=amount_text,
                    amount_path=tx_path + "/Amt/InstdAmt" if amount_el is not None else None,
                    currency=amount_el.get("Ccy") if amount_el is not None else None,
                    dbtr_agt_bic=dbtr_bic,
                    cdtr_agt_bic=_bic(f.get("cdtr"), t),
                    pmt_inf_id=pmt_inf_id,
                    pmt_inf_index=p,
                )
            )
    return _message(defn, path, g, t, tuple(pmt_infs), tuple(txs))


def _report_tx(el: etree._Element, t: _Tags, index: int, path: str, pmt_inf: PmtInfRefs | None) -> TxRefs:
    f = _pick(el, t.report_tx)
    return TxRefs(
        index=index,
        path=path,
        end_to_end_id=_text(f.get("e2e")),
        tx_id=_text(f.get("tx_id")),
        instr_id=_text(f.get("instr_id")),
        uetr=_text(f.get("uetr")),
        instg_agt_bic=_bic(f.get("instg"), t),
        instd_agt_bic=_bic(f.get("instd"), t),
        status=_text(f.get("status")),
        pmt_inf_id=pmt_inf.pmt_inf_id if pmt_inf is not None else None,
        pmt_inf_index=pmt_inf.index if pmt_inf is not None else None,
    )


def _report(defn: MessageDef, body: etree._Element, t: _Tags, path: str) -> MessageRefs:
    """pacs.002 / pain.002: the report's own GrpHdr, and the ids of what it reports on."""
    g: _Found = {}
    orgnl: _Found | None = None
    tx_els: list[etree._Element] = []
    pi_els: list[etree._Element] = []
    for child in body:
        tag = child.tag
        if tag == t.TxInfAndSts:
            tx_els.append(child)
        elif tag == t.OrgnlPmtInfAndSts:
            pi_els.append(child)
        elif tag == t.GrpHdr:
            g = _pick(child, t.group)
        elif tag == t.OrgnlGrpInfAndSts and orgnl is None:
            orgnl = _pick(child, t.report_group)  # pacs.002 allows several; the first names the message
    report = {k: _text(v) for k, v in (orgnl or {}).items()}
    txs: list[TxRefs] = []
    n = len(tx_els)
    for i, el in enumerate(tx_els):
        txs.append(_report_tx(el, t, len(txs), _indexed(path, "TxInfAndSts", i, n), None))
    pmt_infs = []
    n_pi = len(pi_els)
    for p, pi in enumerate(pi_els):
        pi_path = _indexed(path, "OrgnlPmtInfAndSts", p, n_pi)
        pi_tx = [c for c in pi if c.tag == t.TxInfAndSts]
        pf = _pick(pi, t.report_pmt_inf)
        ctrl = _text(pf.get("ctrl_sum"))
        pmt_inf_id, nb = _text(pf.get("pmt_inf_id")), _text(pf.get("nb_of_txs"))
        ref = PmtInfRefs(p, pi_path, pmt_inf_id, nb, _decimal(ctrl), ctrl, None, len(pi_tx))
        pmt_infs.append(ref)
        for i, el in enumerate(pi_tx):
            txs.append(_report_tx(el, t, len(txs), _indexed(pi_path, "TxInfAndSts", i, len(pi_tx)), ref))
    return _message(defn, path, g, t, tuple(pmt_infs), tuple(txs), report)


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

    Kinds are SEARCH_KEYS. For a status report they are the ids of the original transactions, so a search by
    EndToEndId finds the payment and every report about it.
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
    return tuple(out)
