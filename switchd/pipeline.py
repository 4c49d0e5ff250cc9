"""The one path every inbound message takes: a verdict (examine.py), then the durable journal, then the answer.

`Pipeline.accept(inbound)` never raises for a bad message: every refusal becomes an `Outcome` carrying the ISO
reason codes and, where the message type is known, a pacs.002/pain.002 RJCT — journaled, like every accepted
message, durably before the outcome is returned.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from switchd.config import Participant
from switchd.errors import Finding, RejectKind
from switchd.examine import Examiner, Job, Verdict
from switchd.ids import new_message_id
from switchd.iso.refs import MessageRefs, searchable_refs
from switchd.journal import Conflict, Idempotent, InboundRecord, Journal, MessageRow, OutboxEntry, OutboxRow, Stored
from switchd.metrics import Metrics
from switchd.routing import EMPTY_ROUTES, Plan, RouteTable
from switchd.timefmt import rfc3339, utc_now
from switchd.workers import VerdictSource

Clock = Callable[[], datetime]
# (report's message id, sending participant, its refs) -> how it was correlated
ReportHook = Callable[[str, str, MessageRefs], Awaitable[str]]
log = logging.getLogger("switchd.pipeline")


class ReturnHandler(Protocol):
    """Matches returns (pacs.004) to the parts they give back and journals/forwards them (correlate.Correlator)."""

    def returned_parts(self, participant: str, refs: MessageRefs) -> list[OutboxRow]: ...

    async def return_problems(self, refs: MessageRefs, parts: Sequence[OutboxRow]) -> list[Finding]: ...

    async def on_return(
        self, return_message_id: str, refs: MessageRefs, raw: bytes, message_type: str, parts: Sequence[OutboxRow]
    ) -> None: ...


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
    current_state: str | None = None  # for a resubmission: where the message is now (delivered, answered, ...)

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
            out["current_state"] = self.current_state
        if self.report is not None:
            out["status_report"] = self.report.decode()
        return out


class Pipeline:
    """Runs `accept`: the verdict (inline or from worker processes), the journal record, the sender's outcome."""

    def __init__(
        self,
        *,
        examiner: Examiner,
        verdicts: VerdictSource,
        journal: Journal,
        metrics: Metrics,
        clock: Clock = utc_now,
        routes: Callable[[], RouteTable] = lambda: EMPTY_ROUTES,
        on_routed: Callable[[Sequence[OutboxEntry]], None] | None = None,
        on_report: ReportHook | None = None,
        returns: ReturnHandler | None = None,
        switch_bic: str | None = None,
    ) -> None:
        self.examiner = examiner  # for what the main process decides itself (DU01 reports)
        self.verdicts = verdicts
        self.journal = journal
        self.metrics = metrics
        self.clock = clock
        # Read at each message, so a reload (SIGHUP) takes effect for the next one and never mid-message.
        self.routes = routes
        self.on_routed = on_routed  # wakes the delivery side for these new outbox rows
        self.on_report = on_report  # correlates a bank's accepted status report
        self.returns = returns  # matches a bank's return (pacs.004) to what was sent to it
        self.switch_bic = switch_bic  # the InstgAgt of the rejection reports it writes

    async def accept(self, inbound: Inbound) -> Outcome:
        started = time.perf_counter()
        mid = new_message_id(inbound.received_at)
        job = Job(
            inbound.raw, inbound.participant.bics, mid, self.clock(), inbound.participant.signing_certs, self.switch_bic
        )
        verdict = await self.verdicts.verdict(job)
        outcome = await self._record(mid, inbound, verdict)
        log.info(
            "%s %s from %s via %s: %s %s msg_id=%s%s",
            outcome.id,
            outcome.state,
            inbound.participant.name,
            inbound.channel,
            outcome.http_status,
            outcome.message_type or "-",
            outcome.msg_id or "-",
            f" ({verdict.summary})" if outcome.state == "rejected" else "",
        )
        # A resubmission is not a new message: counted under its own outcome, not as another "accepted".
        counted = "resubmitted" if outcome.resubmission else outcome.state
        self.metrics.message_done(
            inbound.channel, outcome.message_type or "unknown", counted, time.perf_counter() - started
        )
        return outcome

    async def _record(self, mid: str, inbound: Inbound, verdict: Verdict) -> Outcome:
        outbox: tuple[OutboxEntry, ...] = ()
        role = self._role(verdict)
        returned: list[OutboxRow] = []
        if verdict.reject_kind is None and role == "payment":
            returned = self._returned_parts(inbound, verdict)
            if returned:
                assert self.returns is not None and verdict.refs is not None  # _returned_parts needs both
                problems = await self.returns.return_problems(verdict.refs, returned)
                if problems:  # refused: nothing is journaled on the payment, nothing forwarded
                    verdict, returned = self._refused(mid, verdict, RejectKind.INVALID, tuple(problems)), []
            if not returned and verdict.reject_kind is None:
                verdict, outbox = self._route(mid, inbound, verdict)
        record = self._build_record(mid, inbound, verdict, outbox)
        result = await self.journal.commit_inbound(record)
        if isinstance(result, Stored):
            if record.outbox and self.on_routed is not None:
                self.on_routed(record.outbox)
            if record.state == "accepted" and role == "report" and self.on_report is not None:
                await self._correlate(mid, inbound, verdict)
            if returned:
                assert self.returns is not None and verdict.refs is not None and verdict.message_type
                try:
                    await self.returns.on_return(mid, verdict.refs, inbound.raw, verdict.message_type, returned)
                except Exception as exc:  # journaled already; flagged, so an operator sees it was not passed on
                    log.exception("%s: correlating the return failed", mid)
                    why = f"return matched {returned[0].id} but could not be passed on: {type(exc).__name__}: {exc}"
                    await self.journal.flag_unmatched(mid, rfc3339(self.clock()), why)
            return _outcome_of(record, verdict)
        if isinstance(result, Idempotent):
            return _original_outcome(result.original)
        assert isinstance(result, Conflict)
        verdict = self._duplicate(mid, verdict, result.original)
        record = self._build_record(mid, inbound, verdict)
        stored = await self.journal.commit_inbound(record)
        if not isinstance(stored, Stored):  # a rejected record never collides: the key is for accepted ones
            raise RuntimeError(f"journal refused a rejected record: {stored!r}")
        return _outcome_of(record, verdict)

    def _returned_parts(self, inbound: Inbound, verdict: Verdict) -> list[OutboxRow]:
        """For a return (pacs.004): the parts it gives back, when they went to this sender's bank (then it goes to
        the originator, not through the routes)."""
        if self.returns is None or verdict.refs is None or not (verdict.message_type or "").startswith("pacs.004."):
            return []
        return self.returns.returned_parts(inbound.participant.name, verdict.refs)

    def _role(self, verdict: Verdict) -> str | None:
        defn = self.examiner.catalogue.get(verdict.message_type or "")
        return defn.role if defn is not None else None

    def _route(self, mid: str, inbound: Inbound, verdict: Verdict) -> tuple[Verdict, tuple[OutboxEntry, ...]]:
        """The outbox entries of an accepted payment, or a RJCT verdict when a route refuses a transaction.

        An empty route table routes nothing: the switch then only validates and journals (intake-only set-ups)."""
        table = self.routes()
        if not table.routes or verdict.refs is None or verdict.message_type is None:
            return verdict, ()
        plan = table.plan(verdict.message_type, inbound.participant.name, verdict.refs)
        if plan.refused:
            findings = tuple(
                Finding(
                    r.reason,
                    f"route {r.route!r} refuses this transaction" if r.route else "no route takes this transaction",
                    path=r.tx.path,
                    tx_ref=r.tx.end_to_end_id,
                )
                for r in plan.refused
            )
            return self._refused(mid, verdict, RejectKind.INVALID, findings), ()
        entries = entries_for(plan, mid, verdict.msg_id or mid, inbound.received_at)
        return verdict, entries

    async def _correlate(self, mid: str, inbound: Inbound, verdict: Verdict) -> None:
        assert self.on_report is not None and verdict.refs is not None
        try:
            await self.on_report(mid, inbound.participant.name, verdict.refs)
        except Exception:  # the report is journaled already; a correlation bug must not turn into a lost answer
            log.exception("%s: correlating the status report failed", mid)

    def _duplicate(self, mid: str, verdict: Verdict, original: MessageRow) -> Verdict:
        """The DU01 verdict for a used MsgId with other content (decided here: only the journal knows)."""
        findings = (
            Finding(
                "DU01",
                f"MsgId {verdict.msg_id!r} was already used by message {original.id} with different content",
                path="/Document",
            ),
        )
        return self._refused(mid, verdict, RejectKind.DUPLICATE, findings)

    def _refused(self, mid: str, verdict: Verdict, kind: RejectKind, findings: tuple[Finding, ...]) -> Verdict:
        """A refusal decided in the main process (duplicate, route), with its RJCT report."""
        defn = self.examiner.catalogue.get(verdict.message_type or "")
        report = None
        if defn is not None:
            report = self.examiner.rejection_report(
                defn, verdict.refs, verdict.msg_id, findings, mid, self.clock(), switch_bic=self.switch_bic
            )
        return Verdict(
            message_type=verdict.message_type,
            family=verdict.family,
            msg_id=verdict.msg_id,
            refs=verdict.refs,
            extra_refs=verdict.extra_refs,
            reject_kind=kind,
            findings=findings,
            report=report,
        )

    def _build_record(
        self, mid: str, inbound: Inbound, verdict: Verdict, outbox: tuple[OutboxEntry, ...] = ()
    ) -> InboundRecord:
        decided_at = rfc3339(self.clock())
        received_at = rfc3339(inbound.received_at)
        sha = hashlib.sha256(inbound.raw).hexdigest()
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
        kind = verdict.reject_kind
        if kind is None:
            events.append(("validated", {"at": decided_at, "message_type": verdict.message_type}))
            events.append(("accepted", {"at": decided_at}))
            state, status = "accepted", 202
            summary: dict[str, Any] = {"summary": "accepted"}
        else:
            state, status = "rejected", kind.http_status
            summary = {
                "summary": verdict.summary,
                "kind": kind.name,
                "findings": [f.as_json() for f in verdict.findings],
            }
            codes = sorted({f.code for f in verdict.findings})
            events.append(("rejected", {"at": decided_at, "kind": kind.name, "codes": codes}))
            if verdict.report is not None:
                report = verdict.report
                events.append(
                    (
                        "reported",
                        {
                            "at": decided_at,
                            "report_id": report.report_id,
                            "status": report.status,
                            "sha256": hashlib.sha256(report.xml).hexdigest(),
                        },
                    )
                )
        refs = (searchable_refs(verdict.refs) if verdict.refs else ()) + verdict.extra_refs
        return InboundRecord(
            id=mid,
            participant=inbound.participant.name,
            channel=inbound.channel,
            channel_ref=inbound.channel_ref,
            received_at=received_at,
            raw=inbound.raw,
            sha256=sha,
            message_type=verdict.message_type,
            family=verdict.family,
            msg_id=verdict.msg_id,
            state=state,
            http_status=status,
            verdict=summary,
            refs=tuple(refs),
            events=tuple(events),
            report=verdict.report,
            outbox=outbox,
        )


def _outcome_of(record: InboundRecord, verdict: Verdict) -> Outcome:
    return Outcome(
        id=record.id,
        state=record.state,
        http_status=record.http_status,
        message_type=record.message_type,
        msg_id=record.msg_id,
        findings=verdict.findings,
        report=record.report.xml if record.report else None,
    )


def _original_outcome(original: MessageRow) -> Outcome:
    # Only accepted messages hold the key, so the original was accepted: answer as then ("accepted"), with 200;
    # where the message has got to since is another field, not a different answer.
    return Outcome(
        id=original.id,
        state="accepted",
        current_state=original.state,
        http_status=200,
        message_type=original.message_type,
        msg_id=original.msg_id,
        resubmission=True,
    )


def part_msg_id(mid: str, part: int) -> str:
    """The MsgId of part `part` of split message `mid` (Max35Text: 29 characters of our id, P, 5 digits)."""
    return f"{mid[:29]}P{part:05d}"


def entries_for(
    plan: Plan,
    mid: str,
    msg_id: str,
    now: datetime,
    *,
    first_part: int = 1,
    reuse: dict[tuple[int, ...], str] | None = None,
    possible_duplicate: bool = False,
) -> tuple[OutboxEntry, ...]:
    """The outbox entries of a routing plan. A message that goes one way keeps its MsgId; each part of a split one
    gets its own (or, in `reuse`, the MsgId an earlier part with the same transactions went under: a replay keeps
    the MsgId the bank saw)."""
    split = len(plan.parts) > 1
    out = []
    for i, part in enumerate(plan.parts):
        n = first_part + i
        reused = (reuse or {}).get(part.tx_indexes)
        out.append(
            OutboxEntry(
                part=n,
                connector=part.route.connector or "",
                route=part.route.name,
                msg_id=reused or (part_msg_id(mid, n) if split else msg_id),
                tx_indexes=part.tx_indexes,
                deadline_at=(
                    rfc3339(now + timedelta(seconds=part.route.deadline_s))
                    if part.route.deadline_s is not None
                    else None
                ),
                possible_duplicate=possible_duplicate,
            )
        )
    return tuple(out)
