"""Status reports and returns from banks: find the payment they answer, journal it in its history, tell the originator.

A report (pacs.002) is matched by OrgnlMsgId to what we sent (the outbox keeps each part's MsgId, and a replay keeps
it), and only when it comes from the participant behind the connector that part went to: a bank cannot answer for
another bank's payments. OrgnlEndToEndId / OrgnlUETR then place each transaction status on the original's
transactions. A report that matches nothing is journaled and flagged `unmatched`, never dropped. A return (pacs.004)
from the bank a payment went to is matched the same way before routing: it is then journaled on the payment and
forwarded to the originator instead of being routed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from switchd.config import Config
from switchd.errors import Finding
from switchd.iso.refs import MessageRefs, TxRefs
from switchd.iso.xml import parse_message
from switchd.journal import Journal, OutboxRow, ReportRecord
from switchd.metrics import Metrics
from switchd.outgoing import Original, OriginatorReports, part_txs
from switchd.timefmt import rfc3339

log = logging.getLogger("switchd.correlate")

REJECTED = "RJCT"
PARTIAL = "PART"
UNKNOWN = "UNKN"  # a report that gives no status at all, neither for the group nor for a transaction
RETURNED = "RETURN"  # the status a forwarded pacs.004 carries in the originator's report feed (not an ISO code)
# A report on part of a message lists each transaction with a transaction status (ExternalPaymentTransactionStatus1
# Code). Where the bank gave none, its group status stands in, but PART is a group code only: a bank that answers
# PART lists the exceptions (as build_status_report does), so a transaction it left out was accepted, and ACCP is
# the plain "accepted"; a report with no status at all leaves the transaction pending.
ACCEPTED_UNLISTED = "ACCP"
PENDING = "PDNG"


@dataclass(frozen=True)
class TxStatus:
    end_to_end_id: str | None
    uetr: str | None
    status: str | None
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.end_to_end_id:
            out["end_to_end_id"] = self.end_to_end_id
        if self.uetr:
            out["uetr"] = self.uetr
        if self.reasons:
            out["reasons"] = list(self.reasons)
        return out


def tx_statuses(refs: MessageRefs) -> list[TxStatus]:
    """Each TxInfAndSts of a pacs.002 / pain.002, as extract_refs read it (with its reason codes)."""
    return [TxStatus(t.original_end_to_end_id, t.original_uetr, t.status, t.reasons) for t in refs.transactions]


def overall_status(group: str | None, txs: Sequence[TxStatus]) -> str:
    if group:
        return group
    statuses = {t.status for t in txs if t.status}
    if len(statuses) == 1:
        return statuses.pop()
    return PARTIAL if statuses else UNKNOWN


def unlisted_tx_status(group: str) -> str:
    """The transaction status a bank's report gives a transaction it does not list, from its group status."""
    if group == PARTIAL:
        return ACCEPTED_UNLISTED
    if group == UNKNOWN:
        return PENDING
    return group


class Correlator:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        reports: OriginatorReports,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.journal = journal
        self.reports = reports
        self.metrics = metrics
        self.clock = clock

    def connector_participant(self, connector: str) -> str | None:
        for c in self.config.connectors:
            if c.name == connector:
                return c.participant
        return None

    async def on_report(self, report_message_id: str, participant: str, refs: MessageRefs) -> str:
        """Correlate an accepted status report; returns "forwarded", "late", "repeated" or "unmatched"."""
        now = self.clock()
        candidates: list[OutboxRow] = []
        if refs.original_msg_id:
            candidates = self.journal.outbox_by_msg_id(refs.original_msg_id)  # indexed: cheaper than a thread hop
        mine = [r for r in candidates if self.connector_participant(r.connector) == participant]
        if not mine:
            why = (
                f"OrgnlMsgId {refs.original_msg_id!r} names nothing sent to {participant}"
                if candidates
                else f"OrgnlMsgId {refs.original_msg_id!r} names nothing switchd sent"
            )
            await self.journal.flag_unmatched(report_message_id, rfc3339(now), why)
            self.metrics.status_reports.labels("unmatched").inc()
            log.warning("status report %s from %s unmatched: %s", report_message_id, participant, why)
            return "unmatched"
        # A replay keeps the MsgId: the answer is for the newest part sent under it that is still waiting, else
        # for the newest (a repeated answer, journaled as such).
        waiting = [r for r in mine if r.answer is None]
        row = (waiting or mine)[0]
        statuses = tx_statuses(refs)
        status = overall_status(refs.group_status, statuses)
        original = await self.reports.originals.get(row.message_id)
        forward = self._forward(original, row, status, statuses, now)
        forwarded = await self.journal.record_answer(
            row.id,
            rfc3339(self.clock()),
            report_message_id=report_message_id,
            status=status,
            transactions=[t.as_json() for t in statuses],
            forward=forward,
            originator=original.participant,
        )
        outcome = "forwarded" if forwarded else ("late" if row.answer == "TIMEOUT" else "repeated")
        self.metrics.status_reports.labels(outcome).inc()
        return outcome

    def returned_parts(self, participant: str, refs: MessageRefs) -> list[OutboxRow]:
        """The parts a return (pacs.004) from `participant` gives back: sent to that participant's connectors under
        the OrgnlMsgId it names (the part's own MsgId when the message was split), newest first. A return that names
        nothing sent to this participant is routed like any other message."""
        if not refs.original_msg_id:
            return []
        rows = self.journal.outbox_by_msg_id(refs.original_msg_id)  # indexed: cheaper inline than a thread hop
        return [r for r in rows if self.connector_participant(r.connector) == participant]

    async def return_problems(self, refs: MessageRefs, parts: Sequence[OutboxRow]) -> list[Finding]:
        """AM09 for each transaction of a return that gives back more than the payment it names carried (same
        currency): a bank returns what it received, never more. A transaction it names that was not in `parts`
        is left to the rules: the return is matched by OrgnlMsgId, its transactions by their original ids."""
        original = await self.reports.originals.get(parts[0].message_id)
        sent: list[TxRefs] = []
        for row in parts:
            sent.extend(part_txs(original.refs, row.tx_indexes))
        by_id: dict[tuple[str, str], TxRefs] = {}
        for tx in sent:
            for key in (("uetr", tx.uetr), ("e2e", tx.end_to_end_id), ("tx", tx.tx_id)):
                if key[1]:
                    by_id.setdefault((key[0], key[1]), tx)
        findings: list[Finding] = []
        for rtx in refs.transactions:
            keys = (("uetr", rtx.original_uetr), ("e2e", rtx.original_end_to_end_id), ("tx", rtx.original_tx_id))
            paid = next((by_id[(k, v)] for k, v in keys if v and (k, v) in by_id), None)
            if paid is None or rtx.amount is None or paid.amount is None or rtx.currency != paid.currency:
                continue
            if rtx.amount > paid.amount:
                findings.append(
                    Finding(
                        "AM09",
                        f"returns {rtx.amount_text} {rtx.currency}, more than the {paid.amount_text} {paid.currency} "
                        f"of the payment it gives back ({paid.end_to_end_id or paid.tx_id or paid.uetr})",
                        path=rtx.amount_path,
                        tx_ref=rtx.original_end_to_end_id or rtx.original_tx_id or rtx.original_uetr,
                    )
                )
        return findings

    async def on_return(
        self, return_message_id: str, refs: MessageRefs, raw: bytes, message_type: str, parts: Sequence[OutboxRow]
    ) -> None:
        """Journal the return on the payment it gives back and forward it, as the bank sent it, to the originator
        (GET /v1/reports, status RETURN)."""
        row = parts[0]
        now = self.clock()
        original = await self.reports.originals.get(row.message_id)
        parsed = parse_message(raw, max_bytes=self.config.http.max_body_bytes)
        msg_id = refs.msg_id or return_message_id
        forward = ReportRecord(
            report_id=msg_id,
            message_type=message_type,
            msg_id=msg_id,
            status=RETURNED,
            xml=etree.tostring(parsed.document, xml_declaration=True, encoding="UTF-8"),
            created_at=rfc3339(now),
        )
        transactions = [
            {k: v for k, v in (("end_to_end_id", t.original_end_to_end_id), ("uetr", t.original_uetr)) if v}
            for t in refs.transactions
        ]
        await self.journal.record_return(
            row.id,
            rfc3339(now),
            return_message_id=return_message_id,
            transactions=transactions,
            forward=forward,
            originator=original.participant,
        )
        self.metrics.status_reports.labels("returned").inc()
        log.info("return %s gives back %s (%s); forwarded to %s", msg_id, row.message_id, row.msg_id,
                 original.participant)  # fmt: skip

    def _forward(
        self, original: Original, row: OutboxRow, status: str, statuses: Sequence[TxStatus], now: datetime
    ) -> ReportRecord | None:
        """The originator's report: the bank's status on the transactions of this part, in the originator's terms.

        A report on the whole message carries the bank's group status and lists the rejected transactions. When
        the message was split across banks, each part's report is PART for the message and lists every
        transaction of the part with its own status (the bank's, else the one its group status stands for), so
        the originator can tell which transactions went through where."""
        txs = part_txs(original.refs, row.tx_indexes)
        whole = len(txs) == len(original.refs.transactions)
        by_e2e = {t.end_to_end_id: t for t in statuses if t.end_to_end_id}
        by_uetr = {t.uetr: t for t in statuses if t.uetr}
        unlisted = unlisted_tx_status(status)
        findings: list[Finding] = []
        listed: dict[int, str] = {}
        for tx in txs:
            st = (by_uetr.get(tx.uetr) if tx.uetr else None) or by_e2e.get(tx.end_to_end_id or "")
            tx_status = st.status if st and st.status else status
            reasons = st.reasons if st else ()
            if tx_status == REJECTED:
                detail = f"rejected by the creditor's bank ({row.connector})"
                for code in reasons or ("NARR",):
                    findings.append(Finding(code, detail, path=tx.path, tx_ref=tx.end_to_end_id))
            elif not whole:  # a listed transaction keeps the reasons the bank gave for any status (PDNG, ACSP...)
                detail = f"{tx_status} from the creditor's bank ({row.connector})"
                for code in reasons:
                    findings.append(Finding(code, detail, path=tx.path, tx_ref=tx.end_to_end_id))
            listed[tx.index] = st.status if st and st.status else unlisted
        if not whole:
            return self.reports.report(original, findings, PARTIAL, now, tx_statuses=listed)
        if findings:
            group = REJECTED if len({f.path for f in findings}) == len(txs) else PARTIAL
        elif status == REJECTED:  # rejected with no transaction to carry the reason: the message carries it
            findings.append(Finding("NARR", f"rejected by {row.connector}", path=original.refs.path))
            group = REJECTED
        else:
            group = status
        return self.reports.report(original, findings, group, now)
