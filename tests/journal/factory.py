"""Small builders of journal records for the journal tests (and the crash-test child process)."""

from __future__ import annotations

import hashlib
from typing import Any

from switchd.journal import Event, InboundRecord, ReportRecord

RECEIVED_AT = "2025-03-01T10:00:00.000000Z"


def make_report(report_id: str = "SWDR1", *, status: str = "RJCT", created_at: str = RECEIVED_AT) -> ReportRecord:
    return ReportRecord(
        report_id=report_id,
        message_type="pacs.002.001.10",
        msg_id=report_id,
        status=status,
        xml=f"<Document><StsRpt id='{report_id}'>{status}</StsRpt></Document>".encode(),
        created_at=created_at,
    )


def make_record(
    id: str = "M0001",
    *,
    participant: str = "BANKA",
    channel: str = "http",
    channel_ref: str | None = "127.0.0.1:5000",
    msg_id: str | None = "MSG-1",
    family: str | None = "pacs.008",
    message_type: str | None = "pacs.008.001.08",
    raw: bytes | None = None,
    state: str = "accepted",
    received_at: str = RECEIVED_AT,
    refs: tuple[tuple[str, str], ...] = (),
    report: ReportRecord | None = None,
    events: tuple[Event, ...] | None = None,
) -> InboundRecord:
    """A consistent record: sha256 of raw, a leading `received` event pinning it, events fitting the state."""
    raw = raw if raw is not None else f"<Document><MsgId>{msg_id}</MsgId></Document>".encode()
    sha = hashlib.sha256(raw).hexdigest()
    if events is None:
        received: Event = ("received", {"at": received_at, "channel": channel, "sha256": sha, "bytes": len(raw)})
        tail: list[Event]
        if state == "accepted":
            tail = [("validated", {"message_type": message_type}), ("accepted", {})]
        else:
            tail = [("rejected", {"codes": ["FF01"]})]
            if report is not None:
                tail.append(("reported", {"report_id": report.report_id, "status": report.status}))
        events = (received, *tail)
    verdict: dict[str, Any] = (
        {"summary": "accepted"} if state == "accepted" else {"summary": "FF01: bad", "findings": [{"code": "FF01"}]}
    )
    return InboundRecord(
        id=id,
        participant=participant,
        channel=channel,
        channel_ref=channel_ref,
        received_at=received_at,
        raw=raw,
        sha256=sha,
        message_type=message_type,
        family=family,
        msg_id=msg_id,
        state=state,
        http_status=202 if state == "accepted" else 422,
        verdict=verdict,
        refs=refs,
        events=events,
        report=report,
    )
