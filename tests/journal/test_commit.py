"""commit_inbound outcomes, append_events and add_report, on a real SQLite file."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from typing import Any

import pytest
import trio

from switchd.errors import JournalError
from switchd.journal import Conflict, Idempotent, Journal, MessageNotFound, Stored
from switchd.journal.chain import canonical_json

from .factory import RECEIVED_AT, make_record, make_report

LATER = "2025-03-01T10:05:00.000000Z"


async def test_stored_writes_message_refs_events_and_report(journal: Journal) -> None:
    report = make_report("SWDM1")
    rec = make_record(
        "M1",
        state="rejected",
        refs=(("end_to_end_id", "E2E-1"), ("uetr", "u-1"), ("end_to_end_id", "E2E-1")),
        report=report,
    )
    assert await journal.commit_inbound(rec) == Stored("M1")

    row = journal.get("M1")
    assert row is not None
    assert (row.participant, row.channel, row.channel_ref) == ("BANKA", "http", "127.0.0.1:5000")
    assert (row.message_type, row.family, row.msg_id, row.state) == ("pacs.008.001.08", "pacs.008", "MSG-1", "rejected")
    assert row.http_status == 422
    assert row.verdict == rec.verdict
    assert row.sha256 == rec.sha256
    assert row.received_at == RECEIVED_AT
    assert journal.raw("M1") == rec.raw
    assert journal.refs("M1") == [("end_to_end_id", "E2E-1"), ("uetr", "u-1")]  # the repeated ref stored once

    events = journal.events("M1")
    assert [e.kind for e in events] == ["received", "rejected", "reported"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert all(e.at == RECEIVED_AT for e in events)
    assert "at" not in events[0].detail  # moved into the event's own time
    assert events[0].detail["sha256"] == rec.sha256

    stored = journal.latest_report("M1")
    assert stored is not None
    assert (stored.report_id, stored.status, stored.xml, stored.participant) == (
        "SWDM1",
        "RJCT",
        report.xml,
        "BANKA",
    )


async def test_event_time_comes_from_detail_else_received_at(journal: Journal) -> None:
    rec = make_record("M1")
    sha = rec.sha256
    rec = replace(rec, events=(("received", {"sha256": sha}), ("accepted", {"at": LATER, "by": "rules"})))
    await journal.commit_inbound(rec)
    events = journal.events("M1")
    assert [(e.kind, e.at, callers(e.detail)) for e in events] == [
        ("received", RECEIVED_AT, {"sha256": sha}),
        ("accepted", LATER, {"by": "rules"}),
    ]


def callers(detail: dict[str, Any]) -> dict[str, Any]:
    """An event's detail without the journal's own pins."""
    return {k: v for k, v in detail.items() if k != "journal"}


async def test_the_journal_pins_the_row_in_the_received_event(journal: Journal) -> None:
    rec = make_record("M1", refs=(("uetr", "u-1"), ("end_to_end_id", "E2E-1"), ("uetr", "u-1")))
    await journal.commit_inbound(rec)
    pin = journal.events("M1")[0].detail["journal"]
    assert pin == {
        "participant": "BANKA",
        "channel": "http",
        "channel_ref": "127.0.0.1:5000",
        "received_at": RECEIVED_AT,
        "message_type": "pacs.008.001.08",
        "family": "pacs.008",
        "msg_id": "MSG-1",
        "http_status": 202,
        "holds_key": 1,
        "state": "accepted",
        "verdict_sha256": hashlib.sha256(canonical_json(rec.verdict).encode()).hexdigest(),
        "refs_sha256": hashlib.sha256(b'[["end_to_end_id","E2E-1"],["uetr","u-1"]]').hexdigest(),
    }


async def test_a_report_stored_with_its_message_is_pinned_in_its_reported_event(journal: Journal) -> None:
    report = make_report("R1")
    await journal.commit_inbound(make_record("M1", state="rejected", report=report))
    reported = journal.events("M1")[-1]
    assert reported.kind == "reported"
    assert reported.detail["sha256"] == hashlib.sha256(report.xml).hexdigest()
    assert reported.detail["journal"]["cursor"] == journal.latest_report("M1").seq  # type: ignore[union-attr]
    # A record whose events name no `reported` event gets one from the journal, at the report's time.
    later = make_report("R2", created_at=LATER)
    rec = make_record("M2", msg_id="MSG-2", state="rejected", report=later)
    rec = replace(rec, events=rec.events[:2])
    await journal.commit_inbound(rec)
    added = journal.events("M2")[-1]
    assert (added.kind, added.at, added.detail["report_id"]) == ("reported", LATER, "R2")
    assert added.detail["sha256"] == hashlib.sha256(later.xml).hexdigest()
    # A caller's `reported` event with another sha256 is a malformed record.
    bad = make_record("M3", msg_id="MSG-3", state="rejected", report=make_report("R3"))
    kind, detail = bad.events[-1]
    bad = replace(bad, events=(*bad.events[:-1], (kind, {**detail, "sha256": "0" * 64})))
    with pytest.raises(ValueError, match="reported"):
        await journal.commit_inbound(bad)
    assert journal.get("M3") is None


async def test_identical_accepted_resubmission_is_idempotent(journal: Journal) -> None:
    first = make_record("M1")
    assert await journal.commit_inbound(first) == Stored("M1")
    again = make_record("M2", channel="sftp", channel_ref="in/batch-7.xml", received_at=LATER)

    result = await journal.commit_inbound(again)

    assert isinstance(result, Idempotent)
    assert result.original.id == "M1"
    assert result.original.state == "accepted"
    assert journal.get("M2") is None  # nothing new but the event
    events = journal.events("M1")
    assert events[-1].kind == "resubmitted"
    assert events[-1].at == LATER
    assert events[-1].detail == {
        "channel": "sftp",
        "channel_ref": "in/batch-7.xml",
        "received_at": LATER,
        "resubmission_id": "M2",
    }
    assert journal.stats()["messages"] == 1


async def test_different_content_under_a_used_msg_id_conflicts_and_writes_nothing(journal: Journal) -> None:
    await journal.commit_inbound(make_record("M1"))
    head = journal.chain_head()

    result = await journal.commit_inbound(make_record("M2", raw=b"<Document>other</Document>"))

    assert isinstance(result, Conflict)
    assert result.original.id == "M1"
    assert journal.get("M2") is None
    assert journal.chain_head() == head  # not even an event
    # The caller then records its DU01 rejection under the same key: rejected messages never collide.
    dup = make_record("M2", raw=b"<Document>other</Document>", state="rejected", report=make_report("SWDM2"))
    assert await journal.commit_inbound(dup) == Stored("M2")


async def test_rejected_messages_do_not_occupy_the_key(journal: Journal) -> None:
    assert await journal.commit_inbound(make_record("M1", state="rejected", raw=b"<bad/>")) == Stored("M1")
    assert await journal.commit_inbound(make_record("M2", state="rejected", raw=b"<bad2/>")) == Stored("M2")
    # The corrected message is accepted under the same MsgId, and then holds the key.
    assert await journal.commit_inbound(make_record("M3")) == Stored("M3")
    assert isinstance(await journal.commit_inbound(make_record("M4")), Idempotent)


async def test_key_is_participant_family_and_msg_id(journal: Journal) -> None:
    assert await journal.commit_inbound(make_record("M1")) == Stored("M1")
    assert await journal.commit_inbound(make_record("M2", participant="BANKB")) == Stored("M2")
    other_family = make_record("M3", family="pain.001", message_type="pain.001.001.09")
    assert await journal.commit_inbound(other_family) == Stored("M3")
    assert await journal.commit_inbound(make_record("M4", msg_id="MSG-2")) == Stored("M4")
    # Without a MsgId (unparseable) there is no key to hold.
    assert await journal.commit_inbound(make_record("M5", msg_id=None, family=None)) == Stored("M5")
    assert await journal.commit_inbound(make_record("M6", msg_id=None, family=None)) == Stored("M6")


async def test_later_states_keep_the_key(journal: Journal) -> None:
    await journal.commit_inbound(make_record("M1"))
    await journal.append_events("M1", [("routed", {"connector": "bank-b"})], new_state="routed", at=LATER)
    assert isinstance(await journal.commit_inbound(make_record("M2")), Idempotent)
    assert isinstance(await journal.commit_inbound(make_record("M3", raw=b"<x/>")), Conflict)


async def test_partial_unique_index_is_a_backstop(journal: Journal, db_path) -> None:
    await journal.commit_inbound(make_record("M1"))
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(
                "INSERT INTO messages SELECT 'M2', participant, channel, channel_ref, received_at, message_type,"
                " family, msg_id, state, http_status, verdict, sha256, holds_key, raw FROM messages WHERE id = 'M1'"
            )
    finally:
        conn.close()


async def test_append_events_and_new_state(journal: Journal) -> None:
    await journal.commit_inbound(make_record("M1"))
    await journal.append_events(
        "M1",
        [("routed", {"connector": "bank-b"}), ("attempt", {"n": 1, "at": "2025-03-01T10:06:00.000000Z"})],
        new_state="routed",
        at=LATER,
    )
    row = journal.get("M1")
    assert row is not None and row.state == "routed"
    tail = journal.events("M1")[-2:]
    # The new state is pinned on the last event of the call: it holds from there on.
    assert [(e.kind, e.at, e.detail) for e in tail] == [
        ("routed", LATER, {"connector": "bank-b"}),
        ("attempt", "2025-03-01T10:06:00.000000Z", {"n": 1, "journal": {"state": "routed"}}),
    ]
    with pytest.raises(ValueError, match="reserved"):
        await journal.append_events("M1", [("routed", {"journal": {"state": "delivered"}})], at=LATER)


async def test_append_events_refuses_what_it_cannot_record(journal: Journal) -> None:
    await journal.commit_inbound(make_record("M1"))
    with pytest.raises(ValueError, match="at least one event"):
        await journal.append_events("M1", [], new_state="routed")
    with pytest.raises(ValueError, match="no time"):
        await journal.append_events("M1", [("routed", {})])  # the journal never reads a clock
    with pytest.raises(MessageNotFound):
        await journal.append_events("nope", [("routed", {})], at=LATER)
    with pytest.raises(MessageNotFound):
        await journal.append_events("nope", [("routed", {})], new_state="routed", at=LATER)
    assert [e.kind for e in journal.events("M1")] == ["received", "validated", "accepted"]


async def test_add_report_stores_it_and_chains_a_reported_event(journal: Journal) -> None:
    await journal.commit_inbound(make_record("M1"))
    first = await journal.add_report("M1", make_report("R1", status="ACSP"), "BANKA")
    second = await journal.add_report("M1", make_report("R2", status="ACSC", created_at=LATER), "BANKA")
    assert second > first
    latest = journal.latest_report("M1")
    assert latest is not None and (latest.report_id, latest.status, latest.seq) == ("R2", "ACSC", second)
    event = journal.events("M1")[-1]
    assert (event.kind, event.at, event.detail["report_id"], event.detail["status"]) == (
        "reported",
        LATER,
        "R2",
        "ACSC",
    )
    with pytest.raises(MessageNotFound):
        await journal.add_report("nope", make_report("R3"), "BANKA")


async def test_malformed_records_are_refused(journal: Journal) -> None:
    good = make_record("M1")
    with pytest.raises(ValueError, match="sha256"):
        await journal.commit_inbound(replace(good, sha256="0" * 64))
    with pytest.raises(ValueError, match="received"):
        await journal.commit_inbound(replace(good, events=(("accepted", {}),)))
    with pytest.raises(ValueError, match="state"):
        await journal.commit_inbound(replace(good, state="routed"))
    with pytest.raises(ValueError, match="no time"):
        await journal.commit_inbound(replace(good, received_at="", events=(("received", {"sha256": good.sha256}),)))
    with pytest.raises(TypeError):  # not JSON-able
        await journal.commit_inbound(replace(good, verdict={"findings": {1, 2}}))
    assert journal.get("M1") is None
    assert journal.verify().ok


async def test_a_reused_id_fails_with_journal_error(journal: Journal) -> None:
    await journal.commit_inbound(make_record("M1"))
    with pytest.raises(JournalError, match="UNIQUE"):
        await journal.commit_inbound(make_record("M1", msg_id="MSG-2"))
    row = journal.get("M1")
    assert row is not None and row.msg_id == "MSG-1"


async def test_a_cancelled_caller_still_gets_its_outcome(journal: Journal) -> None:
    # Once queued, a write is uncancellable (like trio.to_thread.run_sync): the caller learns the outcome.
    with trio.CancelScope() as scope:
        scope.cancel()
        result = await journal.commit_inbound(make_record("M1"))
        assert result == Stored("M1")
        await trio.lowlevel.checkpoint()
    assert journal.get("M1") is not None


async def test_raw_of_unknown_message(journal: Journal) -> None:
    with pytest.raises(MessageNotFound):
        journal.raw("nope")
    assert journal.get("nope") is None
    assert journal.events("nope") == []
    assert journal.latest_report("nope") is None
