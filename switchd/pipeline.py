"""The one path every inbound message takes: parse, identify, validate, check rules and authority, journal.

`Pipeline.accept(inbound)` never raises for a bad message: every refusal becomes an `Outcome` carrying the ISO
reason codes and, where the message type is known, a pacs.002/pain.002 RJCT — journaled, like every accepted
message, durably before the outcome is returned.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from switchd.config import Participant
from switchd.errors import Finding, Rejection, RejectKind
from switchd.ids import new_message_id, report_msg_id
from switchd.iso.catalogue import Catalogue, MessageDef
from switchd.iso.refs import MessageRefs, extract_refs, searchable_refs
from switchd.iso.reports import build_status_report
from switchd.iso.rules import check_rules, check_sender_authority
from switchd.iso.validate import SchemaSet
from switchd.iso.xml import ParsedMessage, parse_message
from switchd.journal import Conflict, Idempotent, InboundRecord, Journal, MessageRow, ReportRecord, Stored
from switchd.metrics import Metrics

Clock = Callable[[], datetime]
log = logging.getLogger("switchd.pipeline")


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Inbound:
    """What an adapter hands the pipeline: the exact bytes and who sent them on which channel."""

    raw: bytes
    channel: str
    participant: Participant
    received_at: datetime
    channel_ref: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The answer to the sender. `http_status` also tells other channels how the message fared."""

    id: str
    state: str  # "accepted" | "rejected"
    http_status: int
    message_type: str | None
    msg_id: str | None
    findings: tuple[Finding, ...] = ()
    report: bytes | None = None
    resubmission: bool = False  # an identical resubmission answered with the original outcome

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "message_type": self.message_type,
            "msg_id": self.msg_id,
        }
        if self.findings:
            out["errors"] = [f.as_json() for f in self.findings]
        if self.resubmission:
            out["resubmission"] = True
        if self.report is not None:
            out["status_report"] = self.report.decode()
        return out


@dataclass
class Examination:
    """What the examiner learnt of one message; `rejection` is None when it may be accepted."""

    parsed: ParsedMessage | None = None
    defn: MessageDef | None = None
    msg_id: str | None = None
    refs: MessageRefs | None = None
    rejection: Rejection | None = None
    sender_bics: frozenset[str] | None = None
    extra_refs: list[tuple[str, str]] = field(default_factory=list)


class Examiner:
    """The pure half of the pipeline: bytes -> verdict (parse, identify, validate, authority, rules).

    Shared by the daemon and by `switchctl validate`; CPU only, no journal, never raises for a bad message.
    """

    def __init__(self, catalogue: Catalogue, schemas: SchemaSet, max_message_bytes: int) -> None:
        self.catalogue = catalogue
        self.schemas = schemas
        self.max_message_bytes = max_message_bytes

    def examine(self, raw: bytes, sender_bics: frozenset[str] | None) -> Examination:
        """`sender_bics` None skips the authority check (offline validation of someone's file)."""
        exam = Examination(sender_bics=sender_bics)
        try:
            exam.parsed = parse_message(raw, max_bytes=self.max_message_bytes)
            exam.defn = self._identify(exam.parsed)
            exam.msg_id = _msg_id(exam.parsed.document)
            self._validate(exam)
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
        if defn.role != "payment":
            raise Rejection.single(
                RejectKind.NOT_WELL_FORMED,
                "FF01",
                f"{defn.id} is a status report; participants submit payment messages here",
                path="/Document",
            )
        return defn

    def _validate(self, exam: Examination) -> None:
        assert exam.parsed is not None and exam.defn is not None
        parsed, defn = exam.parsed, exam.defn
        findings = self.schemas.validate(defn, parsed.document)
        if parsed.app_hdr is not None:
            hdr_def = self.catalogue.header(parsed.app_hdr_namespace or "")
            if hdr_def is None:
                findings.append(
                    Finding("FF01", f"unsupported AppHdr version {parsed.app_hdr_namespace!r}", path="/AppHdr")
                )
            else:
                findings += self.schemas.validate(hdr_def, parsed.app_hdr)
        if findings:
            raise Rejection(RejectKind.INVALID, tuple(findings))
        refs = extract_refs(defn, parsed.document)
        exam.refs = refs
        exam.msg_id = refs.msg_id
        if parsed.app_hdr is not None:
            biz = _child_text(parsed.app_hdr, "BizMsgIdr")
            if biz:
                exam.extra_refs.append(("biz_msg_idr", biz))
        if exam.sender_bics is not None:
            # Authority before content: a message sent in another bank's name is refused as such (403),
            # whatever else is wrong with it.
            forbidden = check_sender_authority(defn, parsed.document, refs, parsed.app_hdr, exam.sender_bics)
            if forbidden:
                raise Rejection(RejectKind.FORBIDDEN, tuple(forbidden))
        findings = check_rules(defn, parsed.document, refs, parsed.app_hdr)
        if findings:
            raise Rejection(RejectKind.INVALID, tuple(findings))


class Pipeline:
    """Runs `accept`: the examiner's verdict, then the durable journal record and the sender's outcome."""

    def __init__(
        self,
        *,
        examiner: Examiner,
        journal: Journal,
        metrics: Metrics,
        clock: Clock = utc_now,
    ) -> None:
        self.examiner = examiner
        self.catalogue = examiner.catalogue
        self.journal = journal
        self.metrics = metrics
        self.clock = clock

    async def accept(self, inbound: Inbound) -> Outcome:
        started = time.perf_counter()
        exam = self.examiner.examine(inbound.raw, inbound.participant.bics)
        outcome = await self._record(inbound, exam)
        log.info(
            "%s %s from %s via %s: %s %s msg_id=%s%s",
            outcome.id,
            outcome.state,
            inbound.participant.name,
            inbound.channel,
            outcome.http_status,
            outcome.message_type or "-",
            outcome.msg_id or "-",
            f" ({exam.rejection.summary})" if exam.rejection and not outcome.resubmission else "",
        )
        self.metrics.messages.labels(inbound.channel, outcome.message_type or "unknown", outcome.state).inc()
        self.metrics.intake_seconds.labels(inbound.channel).observe(time.perf_counter() - started)
        return outcome

    # --- journal part --------------------------------------------------------------------------------------

    async def _record(self, inbound: Inbound, exam: Examination) -> Outcome:
        mid = new_message_id(inbound.received_at)
        record = self._build_record(mid, inbound, exam)
        result = await self.journal.commit_inbound(record)
        if isinstance(result, Stored):
            return self._outcome_of(record, exam)
        if isinstance(result, Idempotent):
            return await self._original_outcome(result.original)
        assert isinstance(result, Conflict)
        dup = Rejection.single(
            RejectKind.DUPLICATE,
            "DU01",
            f"MsgId {exam.msg_id!r} was already used by message {result.original.id} with different content",
            path="/Document",
        )
        exam.rejection = dup
        record = self._build_record(mid, inbound, exam)
        result2 = await self.journal.commit_inbound(record)
        if not isinstance(result2, Stored):  # a rejected record never collides: the key is for accepted ones
            raise RuntimeError(f"journal refused a rejected record: {result2!r}")
        return self._outcome_of(record, exam)

    def _build_record(self, mid: str, inbound: Inbound, exam: Examination) -> InboundRecord:
        decided_at = rfc3339(self.clock())
        received_at = rfc3339(inbound.received_at)
        sha = hashlib.sha256(inbound.raw).hexdigest()
        defn = exam.defn
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "received",
                {
                    "at": received_at,
                    "channel": inbound.channel,
                    "channel_ref": inbound.channel_ref,
                    "participant": inbound.participant.name,
                    "bytes": len(inbound.raw),
                    "sha256": sha,
                },
            )
        ]
        report: ReportRecord | None = None
        rej = exam.rejection
        if rej is None:
            events.append(("validated", {"at": decided_at, "message_type": defn.id if defn else None}))
            events.append(("accepted", {"at": decided_at}))
            state, status = "accepted", 202
            verdict: dict[str, Any] = {"summary": "accepted"}
        else:
            state, status = "rejected", rej.kind.http_status
            verdict = {
                "summary": rej.summary,
                "kind": rej.kind.name,
                "findings": [f.as_json() for f in rej.findings],
            }
            events.append(
                (
                    "rejected",
                    {
                        "at": decided_at,
                        "kind": rej.kind.name,
                        "codes": sorted({f.code for f in rej.findings}),
                    },
                )
            )
            report = self._report_for(mid, exam, decided_at)
            if report is not None:
                events.append(("reported", {"at": decided_at, "report_id": report.report_id, "status": report.status}))
        refs: list[tuple[str, str]] = list(searchable_refs(exam.refs)) if exam.refs else []
        refs += exam.extra_refs
        return InboundRecord(
            id=mid,
            participant=inbound.participant.name,
            channel=inbound.channel,
            channel_ref=inbound.channel_ref,
            received_at=received_at,
            raw=inbound.raw,
            sha256=sha,
            message_type=defn.id if defn else None,
            family=defn.family if defn else None,
            msg_id=exam.msg_id,
            state=state,
            http_status=status,
            verdict=verdict,
            refs=tuple(refs),
            events=tuple(events),
            report=report,
        )

    def _report_for(self, mid: str, exam: Examination, decided_at: str) -> ReportRecord | None:
        """The RJCT status report for a refused message whose type we know (else there is no report family)."""
        rej, defn = exam.rejection, exam.defn
        if rej is None or defn is None:
            return None
        report_def = self.catalogue.report_for(defn)
        if report_def is None:
            return None
        rid = report_msg_id(mid)
        findings = rej.findings
        xml = build_status_report(
            report_def=report_def,
            original_def=defn,
            original=exam.refs,
            original_msg_id=exam.msg_id,
            findings=findings,
            report_msg_id=rid,
            created_at=datetime.fromisoformat(decided_at.replace("Z", "+00:00")),
            group_status="RJCT",
        )
        return ReportRecord(
            report_id=rid,
            message_type=report_def.id,
            msg_id=rid,
            status="RJCT",
            xml=xml,
            created_at=decided_at,
        )

    def _outcome_of(self, record: InboundRecord, exam: Examination) -> Outcome:
        return Outcome(
            id=record.id,
            state=record.state,
            http_status=record.http_status,
            message_type=record.message_type,
            msg_id=record.msg_id,
            findings=exam.rejection.findings if exam.rejection else (),
            report=record.report.xml if record.report else None,
        )

    async def _original_outcome(self, original: MessageRow) -> Outcome:
        # The original was accepted (only accepted messages hold the key): answer as it was answered, with 200.
        return Outcome(
            id=original.id,
            state=original.state,
            http_status=200,
            message_type=original.message_type,
            msg_id=original.msg_id,
            resubmission=True,
        )


def _msg_id(document: etree._Element) -> str | None:
    """GrpHdr/MsgId read before validation, so even an invalid message's report can name it."""
    for top in document:
        if not isinstance(top.tag, str):
            continue
        for grp in top:
            if isinstance(grp.tag, str) and etree.QName(grp).localname == "GrpHdr":
                text = _child_text(grp, "MsgId")
                return text[:35] if text else None
    return None


def _child_text(el: etree._Element, name: str) -> str | None:
    for c in el:
        if isinstance(c.tag, str) and etree.QName(c).localname == name:
            return (c.text or "").strip() or None
    return None
