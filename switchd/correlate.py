"""Status reports from banks: find the payment they answer, journal the answer in its history, tell the originator.

A report (pacs.002) is matched by OrgnlMsgId to what we sent (the outbox keeps each part's MsgId, and a replay keeps
it), and only when it comes from the participant behind the connector that part went to: a bank cannot answer for
another bank's payments. OrgnlEndToEndId / OrgnlUETR then place each transaction status on the original's
transactions. A report that matches nothing is journaled and flagged `unmatched`, never dropped.
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
from switchd.iso.refs import MessageRefs
from switchd.iso.xml import local_name, parse_message
from switchd.journal import Journal, OutboxRow, ReportRecord
from switchd.metrics import Metrics
from switchd.outgoing import Original, OriginatorReports, part_txs
from switchd.timefmt import rfc3339

log = logging.getLogger("switchd.correlate")

REJECTED = "RJCT"


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


def tx_statuses(document: etree._Element) -> list[TxStatus]:
    """Each TxInfAndSts of a pacs.002 / pain.002 Document, with its reason codes (refs.py does not keep those)."""
    out = []
    for el in document.iter():
        if not isinstance(el.tag, str) or local_name(el) != "TxInfAndSts":
            continue
        found: dict[str, str] = {}
        reasons: list[str] = []
        for child in el.iter():
            if not isinstance(child.tag, str):
                continue
            name = local_name(child)
            if name in ("OrgnlEndToEndId", "OrgnlUETR", "TxSts") and name not in found:
                found[name] = (child.text or "").strip()
            elif name == "Cd" and child.getparent() is not None and local_name(child.getparent()) == "Rsn":
                reasons.append((child.text or "").strip())
        out.append(TxStatus(found.get("OrgnlEndToEndId"), found.get("OrgnlUETR"), found.get("TxSts"), tuple(reasons)))
    return out


def overall_status(group: str | None, txs: Sequence[TxStatus]) -> str:
    if group:
        return group
    statuses = {t.status for t in txs if t.status}
    if len(statuses) == 1:
        return statuses.pop()
    return "PART" if statuses else "UNKN"


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

    async def on_report(self, report_message_id: str, participant: str, refs: MessageRefs, raw: bytes) -> str:
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
        parsed = parse_message(raw, max_bytes=self.config.http.max_body_bytes)
        statuses = tx_statuses(parsed.document)
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

    def _forward(
        self, original: Original, row: OutboxRow, status: str, statuses: Sequence[TxStatus], now: datetime
    ) -> ReportRecord | None:
        """The originator's report: the bank's status on the transactions of this part, in the originator's terms."""
        txs = part_txs(original.refs, row.tx_indexes)
        by_e2e = {t.end_to_end_id: t for t in statuses if t.end_to_end_id}
        by_uetr = {t.uetr: t for t in statuses if t.uetr}
        findings: list[Finding] = []
        for tx in txs:
            st = (by_uetr.get(tx.uetr) if tx.uetr else None) or by_e2e.get(tx.end_to_end_id or "")
            tx_status = st.status if st and st.status else status
            if tx_status == REJECTED:
                codes = (st.reasons if st else ()) or ("NARR",)
                for code in codes:
                    detail = f"rejected by the creditor's bank ({row.connector})"
                    findings.append(Finding(code, detail, path=tx.path, tx_ref=tx.end_to_end_id))
        whole = len(txs) == len(original.refs.transactions)
        if findings:
            rejected_all = len({f.path for f in findings}) == len(txs)
            group = REJECTED if rejected_all and whole else "PART"
        else:
            group = status if whole and status != REJECTED else "PART"
            if status == REJECTED:
                findings.append(Finding("NARR", f"rejected by {row.connector}", path=original.refs.path))
                group = REJECTED if whole else "PART"
        return self.reports.report(original, findings, group, now)
