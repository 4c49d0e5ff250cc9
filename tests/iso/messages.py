"""Builders for the issue-4 message types beyond pacs.008 / pain.001 (pacs.009, pacs.004, pacs.028, camt.056,
camt.029, pain.008), in either catalogue version, valid against the project's XSDs unless told otherwise.

Each builder takes the message id (version) and keyword overrides; `OMIT` leaves an element out. A tree is spelled
as nested tuples `(name, content, attributes)` so one reads the element order the XSD demands at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lxml import etree

from tests.builders import OMIT, stable_uetr

ISO_NS = "urn:iso:std:iso:20022:tech:xsd:"
CRE_DT_TM = "2026-11-23T10:00:00Z"
Node = tuple[Any, ...]  # (name, text | list of nodes | None, {attribute: value}?)


def _build(parent: etree._Element, node: Node) -> None:
    name, content, *rest = node
    if content is None or content == OMIT:
        return
    child = etree.SubElement(parent, f"{{{etree.QName(parent).namespace}}}{name}", rest[0] if rest else {})
    if isinstance(content, str):
        child.text = content
    else:
        for sub in content:
            if sub is not None:
                _build(child, sub)


def document(message_id: str, root: str, children: Sequence[Node | None]) -> bytes:
    ns = ISO_NS + message_id
    doc = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    _build(doc, (root, list(children)))
    data: bytes = etree.tostring(doc, xml_declaration=True, encoding="UTF-8")
    return data


def agent(name: str, bic: str | None) -> Node | None:
    return None if bic is None else (name, [("FinInstnId", [("BICFI", bic)])])


def amount(name: str, value: str | None, ccy: str = "EUR") -> Node | None:
    return None if value is None else (name, value, {"Ccy": ccy})


def _opt(name: str, value: str | None) -> Node | None:
    return None if value is None else (name, value)


def _total(values: Sequence[str]) -> str:
    return str(sum((Decimal(v) for v in values), Decimal(0)))


# -- pacs.009 ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FiTx:
    """One pacs.009 CdtTrfTxInf: a bank pays a bank (debtor and creditor are financial institutions)."""

    end_to_end_id: str = "E2E-1"
    tx_id: str = "TX-1"
    uetr: str | None = "auto"
    amount: str = "1000.00"
    ccy: str = "EUR"
    debtor_bic: str = "AAAAUS33XXX"
    creditor_bic: str = "BBBBDEFFXXX"
    instg_agt_bic: str | None = None
    instd_agt_bic: str | None = None


def pacs009(
    message_id: str = "pacs.009.001.08",
    *,
    msg_id: str = "FI-1",
    txs: Sequence[FiTx] = (FiTx(),),
    nb_of_txs: str | None = None,
    ctrl_sum: str | None = OMIT,
    ttl: str | None = None,
    ttl_ccy: str = "EUR",
    instg_bic: str | None = "AAAAUS33XXX",
    instd_bic: str | None = "BBBBDEFFXXX",
) -> bytes:
    amounts = [t.amount for t in txs]
    grp: list[Node | None] = [
        ("MsgId", msg_id),
        ("CreDtTm", CRE_DT_TM),
        ("NbOfTxs", nb_of_txs if nb_of_txs is not None else str(len(txs))),
        _opt("CtrlSum", _total(amounts) if ctrl_sum is None else ctrl_sum),
        amount("TtlIntrBkSttlmAmt", _total(amounts) if ttl is None else ttl, ttl_ccy),
        ("IntrBkSttlmDt", "2026-11-23"),
        ("SttlmInf", [("SttlmMtd", "INDA")]),
        agent("InstgAgt", instg_bic),
        agent("InstdAgt", instd_bic),
    ]
    body: list[Node | None] = [("GrpHdr", grp)]
    for t in txs:
        uetr = stable_uetr(t.end_to_end_id) if t.uetr == "auto" else t.uetr
        body.append(
            (
                "CdtTrfTxInf",
                [
                    ("PmtId", [("EndToEndId", t.end_to_end_id), ("TxId", t.tx_id), _opt("UETR", uetr)]),
                    amount("IntrBkSttlmAmt", t.amount, t.ccy),
                    agent("InstgAgt", t.instg_agt_bic),
                    agent("InstdAgt", t.instd_agt_bic),
                    agent("Dbtr", t.debtor_bic),
                    agent("Cdtr", t.creditor_bic),
                ],
            )
        )
    return document(message_id, "FICdtTrf", body)


# -- messages about an original payment --------------------------------------------------------------------------


@dataclass(frozen=True)
class Orig:
    """The original transaction a return, status request, cancellation or resolution is about."""

    end_to_end_id: str | None = "E2E-1"
    tx_id: str | None = "TX-1"
    uetr: str | None = "auto"
    msg_id: str | None = None  # a per-transaction OrgnlGrpInf/OrgnlMsgId (None: only the group's)
    msg_nm_id: str = "pacs.008.001.08"
    amount: str | None = "100.00"  # returned (pacs.004) or original settlement (camt.056/camt.029) amount
    ccy: str = "EUR"

    @property
    def uetr_value(self) -> str | None:
        return stable_uetr(self.end_to_end_id or "x") if self.uetr == "auto" else self.uetr

    def ids(self) -> list[Node | None]:
        grp = None
        if self.msg_id is not None:
            grp = ("OrgnlGrpInf", [("OrgnlMsgId", self.msg_id), ("OrgnlMsgNmId", self.msg_nm_id)])
        return [grp, _opt("OrgnlEndToEndId", self.end_to_end_id), _opt("OrgnlTxId", self.tx_id)]


def _orig_group(name: str, msg_id: str | None, nm_id: str = "pacs.008.001.08") -> Node | None:
    return None if msg_id is None else (name, [("OrgnlMsgId", msg_id), ("OrgnlMsgNmId", nm_id)])


def pacs004(
    message_id: str = "pacs.004.001.09",
    *,
    msg_id: str = "RTR-1",
    original_msg_id: str | None = "ORIG-1",
    txs: Sequence[Orig] = (Orig(),),
    nb_of_txs: str | None = None,
    ctrl_sum: str | None = OMIT,
    ttl: str | None = None,
    instg_bic: str | None = "BBBBDEFFXXX",
    instd_bic: str | None = "AAAAUS33XXX",
    reason: str = "AC04",
) -> bytes:
    amounts = [t.amount for t in txs if t.amount is not None]
    grp: list[Node | None] = [
        ("MsgId", msg_id),
        ("CreDtTm", CRE_DT_TM),
        ("NbOfTxs", nb_of_txs if nb_of_txs is not None else str(len(txs))),
        _opt("CtrlSum", _total(amounts) if ctrl_sum is None else ctrl_sum),
        amount("TtlRtrdIntrBkSttlmAmt", _total(amounts) if ttl is None else ttl),
        ("IntrBkSttlmDt", "2026-11-24"),
        ("SttlmInf", [("SttlmMtd", "INDA")]),
        agent("InstgAgt", instg_bic),
        agent("InstdAgt", instd_bic),
    ]
    body: list[Node | None] = [("GrpHdr", grp), _orig_group("OrgnlGrpInf", original_msg_id)]
    for i, t in enumerate(txs, start=1):
        body.append(
            (
                "TxInf",
                [
                    ("RtrId", f"RTR-TX-{i}"),
                    *t.ids(),
                    _opt("OrgnlUETR", t.uetr_value),
                    amount("RtrdIntrBkSttlmAmt", t.amount, t.ccy),
                    ("RtrRsnInf", [("Rsn", [("Cd", reason)])]),
                ],
            )
        )
    return document(message_id, "PmtRtr", body)


def pacs028(
    message_id: str = "pacs.028.001.03",
    *,
    msg_id: str = "REQ-1",
    original_msg_id: str | None = "ORIG-1",
    txs: Sequence[Orig] = (Orig(),),
    instg_bic: str | None = "AAAAUS33XXX",
    instd_bic: str | None = "BBBBDEFFXXX",
) -> bytes:
    body: list[Node | None] = [
        (
            "GrpHdr",
            [("MsgId", msg_id), ("CreDtTm", CRE_DT_TM), agent("InstgAgt", instg_bic), agent("InstdAgt", instd_bic)],
        ),
        _orig_group("OrgnlGrpInf", original_msg_id),
    ]
    for i, t in enumerate(txs, start=1):
        body.append(("TxInf", [("StsReqId", f"REQ-TX-{i}"), *t.ids(), _opt("OrgnlUETR", t.uetr_value)]))
    return document(message_id, "FIToFIPmtStsReq", body)


def _assignment(assignment_id: str, assigner_bic: str | None, assignee_bic: str) -> Node:
    assigner: Node = (
        ("Assgnr", [("Agt", [("FinInstnId", [("BICFI", assigner_bic)])])])
        if assigner_bic is not None
        else ("Assgnr", [("Pty", [("Nm", "A Corporate")])])
    )
    return (
        "Assgnmt",
        [
            ("Id", assignment_id),
            assigner,
            ("Assgne", [("Agt", [("FinInstnId", [("BICFI", assignee_bic)])])]),
            ("CreDtTm", CRE_DT_TM),
        ],
    )


@dataclass(frozen=True)
class Underlying:
    """One camt.056 Undrlyg (or camt.029 CxlDtls): an original message and transactions of it."""

    original_msg_id: str | None = "ORIG-1"
    txs: Sequence[Orig] = field(default_factory=lambda: [Orig()])


def camt056(
    message_id: str = "camt.056.001.08",
    *,
    assignment_id: str = "CXL-1",
    assigner_bic: str | None = "AAAAUS33XXX",
    assignee_bic: str = "BBBBDEFFXXX",
    underlying: Sequence[Underlying] = (Underlying(),),
    nb_of_txs: str | None = None,
    ctrl_sum: str | None = OMIT,
) -> bytes:
    all_txs = [t for u in underlying for t in u.txs]
    body: list[Node | None] = [_assignment(assignment_id, assigner_bic, assignee_bic)]
    if nb_of_txs != OMIT:
        amounts = [t.amount for t in all_txs if t.amount is not None]
        body.append(
            (
                "CtrlData",
                [
                    ("NbOfTxs", nb_of_txs if nb_of_txs is not None else str(len(all_txs))),
                    _opt("CtrlSum", _total(amounts) if ctrl_sum is None else ctrl_sum),
                ],
            )
        )
    n = 0
    for u in underlying:
        txs: list[Node | None] = [_orig_group("OrgnlGrpInfAndCxl", u.original_msg_id)]
        for t in u.txs:
            n += 1
            txs.append(
                (
                    "TxInf",
                    [
                        ("CxlId", f"CXL-TX-{n}"),
                        *t.ids(),
                        _opt("OrgnlUETR", t.uetr_value),
                        amount("OrgnlIntrBkSttlmAmt", t.amount, t.ccy),
                        ("CxlRsnInf", [("Rsn", [("Cd", "DUPL")])]),
                    ],
                )
            )
        body.append(("Undrlyg", txs))
    return document(message_id, "FIToFIPmtCxlReq", body)


def camt029(
    message_id: str = "camt.029.001.09",
    *,
    assignment_id: str = "RSL-1",
    assigner_bic: str | None = "BBBBDEFFXXX",
    assignee_bic: str = "AAAAUS33XXX",
    details: Sequence[Underlying] = (Underlying(),),
    status: str = "CNCL",
) -> bytes:
    body: list[Node | None] = [
        _assignment(assignment_id, assigner_bic, assignee_bic),
        ("Sts", [("Conf", status)]),
    ]
    n = 0
    for d in details:
        items: list[Node | None] = [_orig_group("OrgnlGrpInfAndSts", d.original_msg_id)]
        for t in d.txs:
            n += 1
            grp, e2e, tx_id = t.ids()
            items.append(
                (
                    "TxInfAndSts",
                    [
                        ("CxlStsId", f"RSL-TX-{n}"),
                        grp,
                        e2e,
                        tx_id,
                        _opt("OrgnlUETR", t.uetr_value),  # after OrgnlClrSysRef's place: camt.029 differs
                        ("TxCxlSts", "ACCR" if status == "CNCL" else "RJCR"),
                    ],
                )
            )
        body.append(("CxlDtls", items))
    return document(message_id, "RsltnOfInvstgtn", body)


# -- pain.008 ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DdTx:
    """One pain.008 DrctDbtTxInf: a collection from a debtor under a mandate."""

    end_to_end_id: str = "E2E-1"
    amount: str = "50.00"
    ccy: str = "EUR"
    mandate_id: str | None = "MNDT-1"
    debtor_agent_bic: str = "BBBBDEFFXXX"
    debtor_iban: str = "DE89370400440532013000"


@dataclass(frozen=True)
class DdPmtInf:
    pmt_inf_id: str = "PMT-1"
    txs: Sequence[DdTx] = field(default_factory=lambda: [DdTx()])
    creditor_agent_bic: str = "AAAAGB2LXXX"
    nb_of_txs: str | None = None
    ctrl_sum: str | None = None


def pain008(
    message_id: str = "pain.008.001.08",
    *,
    msg_id: str = "DD-1",
    pmt_infs: Sequence[DdPmtInf] = (DdPmtInf(),),
    nb_of_txs: str | None = None,
    ctrl_sum: str | None = None,
) -> bytes:
    all_amounts = [t.amount for p in pmt_infs for t in p.txs]
    body: list[Node | None] = [
        (
            "GrpHdr",
            [
                ("MsgId", msg_id),
                ("CreDtTm", CRE_DT_TM),
                ("NbOfTxs", nb_of_txs if nb_of_txs is not None else str(len(all_amounts))),
                _opt("CtrlSum", _total(all_amounts) if ctrl_sum is None else ctrl_sum),
                ("InitgPty", [("Nm", "Creditor Corp")]),
            ],
        )
    ]
    for p in pmt_infs:
        items: list[Node | None] = [
            ("PmtInfId", p.pmt_inf_id),
            ("PmtMtd", "DD"),
            ("NbOfTxs", p.nb_of_txs if p.nb_of_txs is not None else str(len(p.txs))),
            _opt("CtrlSum", _total([t.amount for t in p.txs]) if p.ctrl_sum is None else p.ctrl_sum),
            ("ReqdColltnDt", "2026-11-30"),
            ("Cdtr", [("Nm", "Creditor Corp")]),
            ("CdtrAcct", [("Id", [("IBAN", "GB29NWBK60161331926819")])]),
            agent("CdtrAgt", p.creditor_agent_bic),
        ]
        for t in p.txs:
            mandate = None
            if t.mandate_id is not None:
                mandate = ("DrctDbtTx", [("MndtRltdInf", [("MndtId", t.mandate_id), ("DtOfSgntr", "2026-01-15")])])
            items.append(
                (
                    "DrctDbtTxInf",
                    [
                        ("PmtId", [("EndToEndId", t.end_to_end_id)]),
                        amount("InstdAmt", t.amount, t.ccy),
                        mandate,
                        agent("DbtrAgt", t.debtor_agent_bic),
                        ("Dbtr", [("Nm", "Dora Debtor")]),
                        ("DbtrAcct", [("Id", [("IBAN", t.debtor_iban)])]),
                    ],
                )
            )
        body.append(("PmtInf", items))
    return document(message_id, "CstmrDrctDbtInitn", body)
