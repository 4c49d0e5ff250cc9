"""Bytes in, verdict out: parse, identify, validate, sender authority, business rules, and the RJCT report.

CPU only, no journal, no clock (the report's time is passed in); never raises for a bad message. The `Verdict`
is plain picklable data so that worker processes can compute it (see workers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from lxml import etree

from hsm.errors import SignatureInvalid
from hsm.xmldsig import verify_tree
from switchd.errors import Finding, Rejection, RejectKind
from switchd.ids import report_msg_id
from switchd.iso.catalogue import Catalogue, MessageDef
from switchd.iso.refs import MessageRefs, extract_refs
from switchd.iso.reports import build_status_report
from switchd.iso.rules import check_rules, check_sender_authority
from switchd.iso.validate import SchemaSet
from switchd.iso.xml import ParsedMessage, document_msg_id, local_name, parse_message
from switchd.journal.records import ReportRecord


@dataclass(frozen=True)
class Job:
    """One message to examine. `sender_bics` None skips the authority check (offline validation); non-empty
    `signer_certs` (DER) require a valid AppHdr signature by one of them."""

    raw: bytes
    sender_bics: frozenset[str] | None
    message_id: str  # the id the message will be journaled under (names the report)
    now: datetime  # the report's creation time
    signer_certs: tuple[bytes, ...] = ()
    switch_bic: str | None = None  # GrpHdr/InstgAgt of a rejection report (the switch writes it)


@dataclass(frozen=True)
class Verdict:
    """What the examiner decided; `reject_kind` None means the message may be accepted."""

    message_type: str | None
    family: str | None
    msg_id: str | None
    refs: MessageRefs | None
    extra_refs: tuple[tuple[str, str], ...]
    reject_kind: RejectKind | None
    findings: tuple[Finding, ...]
    report: ReportRecord | None  # the RJCT, when refused and the message type is known

    @property
    def summary(self) -> str:
        if self.reject_kind is None:
            return "accepted"
        return Rejection(self.reject_kind, self.findings).summary


@dataclass
class Examination:
    """Working state while examining one message (holds lxml trees: never leaves the process)."""

    sender_bics: frozenset[str] | None
    signer_certs: tuple[bytes, ...] = ()
    parsed: ParsedMessage | None = None
    defn: MessageDef | None = None
    msg_id: str | None = None
    refs: MessageRefs | None = None
    rejection: Rejection | None = None
    extra_refs: list[tuple[str, str]] = field(default_factory=list)


class Examiner:
    """Holds the catalogue and compiled schemas; shared by the daemon, its workers and `switchctl validate`."""

    def __init__(self, catalogue: Catalogue, schemas: SchemaSet, max_message_bytes: int) -> None:
        self.catalogue = catalogue
        self.schemas = schemas
        self.max_message_bytes = max_message_bytes
        self._certs: dict[bytes, x509.Certificate] = {}  # parsed once per process, not per message

    def verdict(self, job: Job) -> Verdict:
        exam = self.examine(job.raw, job.sender_bics, job.signer_certs, job.now)
        defn, rej = exam.defn, exam.rejection
        report = None
        if rej is not None and defn is not None:
            report = self.rejection_report(
                defn, exam.refs, exam.msg_id, rej.findings, job.message_id, job.now, switch_bic=job.switch_bic
            )
        return Verdict(
            message_type=defn.id if defn else None,
            family=defn.family if defn else None,
            msg_id=exam.msg_id,
            refs=exam.refs,
            extra_refs=tuple(exam.extra_refs),
            reject_kind=rej.kind if rej else None,
            findings=rej.findings if rej else (),
            report=report,
        )

    def rejection_report(
        self,
        defn: MessageDef,
        refs: MessageRefs | None,
        msg_id: str | None,
        findings: tuple[Finding, ...],
        message_id: str,
        now: datetime,
        *,
        switch_bic: str | None = None,
    ) -> ReportRecord | None:
        """The RJCT pacs.002/pain.002 for a refused message of type `defn` (None if it has no report type), from
        `switch_bic` (GrpHdr/InstgAgt, pain.002 InitgPty) to the InstgAgt the message named, if it named one."""
        report_def = self.catalogue.report_for(defn)
        if report_def is None:
            return None
        rid = report_msg_id(message_id)
        xml = build_status_report(
            report_def=report_def,
            original_def=defn,
            original=refs,
            original_msg_id=msg_id,
            findings=findings,
            report_msg_id=rid,
            created_at=now,
            group_status="RJCT",
            instructing_bic=switch_bic,
            instructed_bic=refs.instg_agt_bic if refs is not None else None,
        )
        created = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        return ReportRecord(
            report_id=rid, message_type=report_def.id, msg_id=rid, status="RJCT", xml=xml, created_at=created
        )

    def examine(
        self,
        raw: bytes,
        sender_bics: frozenset[str] | None,
        signer_certs: tuple[bytes, ...] = (),
        now: datetime | None = None,
    ) -> Examination:
        exam = Examination(sender_bics=sender_bics, signer_certs=signer_certs)
        try:
            exam.parsed = parse_message(raw, max_bytes=self.max_message_bytes)
            exam.defn = self._identify(exam.parsed)
            msg_id = document_msg_id(exam.parsed.document)
            exam.msg_id = msg_id[:35] if msg_id else None  # Max35Text: what a report can carry
            self._validate(exam, now)
        except Rejection as rej:
            exam.rejection = rej
        return exam

    def _identify(self, parsed: ParsedMessage) -> MessageDef:
        defn = self.catalogue.by_namespace(parsed.namespace)
        if defn is None or defn.role == "header":
            raise Rejection.single(
                RejectKind.NOT_WELL_FORMED,
                "FF01",
                f"unsupported message: no schema for namespace {parsed.namespace!r}",
                path="/Document",
            )
        # Status reports are taken too: banks answer through the same channels (correlate.py matches them).
        return defn

    def _validate(self, exam: Examination, now: datetime | None = None) -> None:
        assert exam.parsed is not None and exam.defn is not None
        parsed, defn = exam.parsed, exam.defn
        findings = self.schemas.message_findings(
            self.catalogue, defn, parsed.document, parsed.app_hdr, parsed.app_hdr_namespace
        )
        if findings:
            raise Rejection(RejectKind.INVALID, tuple(findings))
        refs = extract_refs(defn, parsed.document)
        exam.refs = refs
        exam.msg_id = refs.msg_id
        if parsed.app_hdr is not None:
            biz = _child_text(parsed.app_hdr, "BizMsgIdr")
            if biz:
                exam.extra_refs.append(("biz_msg_idr", biz))
        if exam.signer_certs:
            # Who signed it before what it claims: a message its sender's key did not sign is not its message.
            self._check_signature(exam.parsed, exam.signer_certs, now)
        if exam.sender_bics is not None:
            # Authority before content: a message sent in another bank's name is refused as such (403),
            # whatever else is wrong with it.
            forbidden = check_sender_authority(defn, parsed.document, refs, parsed.app_hdr, exam.sender_bics)
            if forbidden:
                raise Rejection(RejectKind.FORBIDDEN, tuple(forbidden))
        findings = check_rules(defn, parsed.document, refs, parsed.app_hdr)
        if findings:
            raise Rejection(RejectKind.INVALID, tuple(findings))

    def _check_signature(self, parsed: ParsedMessage, ders: tuple[bytes, ...], now: datetime | None) -> None:
        """Raise Rejection(FORBIDDEN) unless the AppHdr signature verifies against one of the sender's certificates.

        Codes: see `_signature_code`."""
        certs = [self._cert(d) for d in ders]
        if parsed.app_hdr is None:
            raise Rejection.single(
                RejectKind.FORBIDDEN,
                "DS0A",
                "this participant must sign its messages: send an AppHdr with a signature (Sgntr)",
                path="/AppHdr",
            )
        try:
            verify_tree(parsed.root, certs, at=now)
        except SignatureInvalid as exc:
            code = _signature_code(exc)
            raise Rejection.single(
                RejectKind.FORBIDDEN, code, f"signature check failed: {exc}", path="/AppHdr/Sgntr"
            ) from None
        except Exception as exc:  # lxml refusing to canonicalise, say: unverifiable is not verified
            raise Rejection.single(
                RejectKind.FORBIDDEN, "DS0B", f"signature cannot be checked: {exc}", path="/AppHdr/Sgntr"
            ) from None

    def _cert(self, der: bytes) -> x509.Certificate:
        cert = self._certs.get(der)
        if cert is None:
            cert = self._certs[der] = x509.load_der_x509_certificate(der)
        return cert


def _signature_code(exc: SignatureInvalid) -> str:
    """The ExternalStatusReason1Code of a failed check: DS0A required but missing, DS0D the certificate is not valid
    now, DS0E signed with a certificate that is not the sender's, DS0B anything else (a changed AppHdr, Document or
    KeyInfo, a bad SignatureValue, another layout)."""
    return {"missing": "DS0A", "expired": "DS0D", "untrusted": "DS0E"}.get(exc.reason, "DS0B")


def _child_text(el: etree._Element, name: str) -> str | None:
    for c in el:
        if local_name(c) == name:
            return (c.text or "").strip() or None
    return None
