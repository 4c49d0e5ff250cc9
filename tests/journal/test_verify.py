"""Tamper evidence: every kind of edit made behind the journal's back is found and the row named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from switchd.journal import VerifyResult, open_journal
from switchd.journal.chain import canonical_json, event_hash

from .factory import RECEIVED_AT, make_record, make_report
from .tampering import check, tamper

# Three messages of three events each (seq 1-9), then a routed event (10) and a reported event (11) on M2.
LAST = 11


@pytest.fixture
async def populated(db_path: Path) -> Path:
    async with open_journal(db_path) as journal:
        for i in (1, 2, 3):
            await journal.commit_inbound(make_record(f"M{i}", msg_id=f"MSG-{i}", raw=f"<Doc>{i}</Doc>".encode()))
        await journal.append_events("M2", [("routed", {"connector": "bank-b"})], "routed", at="2025-03-01T11:00Z")
        await journal.add_report("M2", make_report("R2", status="ACSC"), "BANKA")
        assert journal.chain_head()[0] == LAST
    return db_path


def named(result: VerifyResult) -> set[str]:
    return {str(p) for p in result.problems}


async def test_an_untouched_journal_verifies(populated: Path) -> None:
    result = check(populated)
    assert result.ok, result.problems
    assert (result.checked, result.messages) == (LAST, 3)
    assert result.head is not None and result.head[0] == LAST


async def test_edited_event_detail_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("""UPDATE events SET detail = '{"connector":"evil-bank"}' WHERE seq = 10""")
    result = check(populated)
    assert not result.ok
    assert [(p.seq, p.message_id) for p in result.problems] == [(10, "M2")]
    assert "does not match its hash" in result.problems[0].what


async def test_edited_event_kind_and_time_are_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("UPDATE events SET kind = 'rejected' WHERE seq = 3")
        conn.execute("UPDATE events SET at = '2020-01-01T00:00:00.000000Z' WHERE seq = 7")
    assert [p.seq for p in check(populated).problems] == [3, 7]


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(populated: Path) -> None:
    # The attacker knows the algorithm and rehashes the edited row, but not the rest of the chain.
    with tamper(populated) as conn:
        seq, mid, at, kind, prev = conn.execute(
            "SELECT seq, message_id, at, kind, prev_hash FROM events WHERE seq = 5"
        ).fetchone()
        detail = canonical_json({"forged": True})
        conn.execute(
            "UPDATE events SET detail = ?, hash = ? WHERE seq = 5",
            (detail, event_hash(prev, seq, mid, at, kind, detail)),
        )
    result = check(populated)
    assert [p.seq for p in result.problems] == [6]
    assert "prev_hash" in result.problems[0].what


async def test_deleted_event_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("DELETE FROM events WHERE seq = 5")
    result = check(populated)
    assert [p.seq for p in result.problems] == [5]
    assert "missing" in result.problems[0].what


async def test_deleted_received_event_names_the_gap_and_the_unpinned_message(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("DELETE FROM events WHERE seq = 4")
    assert named(check(populated)) == {
        "event 4: event(s) 4 missing: deleted from the chain",
        "message M2: no 'received' event pinning the raw bytes' sha256",
    }


async def test_deleted_message_with_its_events_and_refs_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("DELETE FROM events WHERE message_id = 'M1'")
        conn.execute("DELETE FROM messages WHERE id = 'M1'")
    result = check(populated)
    assert [p.seq for p in result.problems] == [1]
    assert "1..3 missing" in result.problems[0].what


async def test_deleted_message_row_alone_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("DELETE FROM messages WHERE id = 'M3'")
    assert named(check(populated)) == {"message M3: message row deleted: its events remain"}


async def test_reordered_events_are_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("UPDATE events SET seq = -1 WHERE seq = 4")
        conn.execute("UPDATE events SET seq = 4 WHERE seq = 5")
        conn.execute("UPDATE events SET seq = 5 WHERE seq = -1")
    result = check(populated)
    # Both moved rows fail their hash, and the row after them no longer links to what now precedes it.
    assert {p.seq for p in result.problems} == {4, 5, 6}
    assert {p.seq for p in result.problems if "does not match its hash" in p.what} == {4, 5}


async def test_edited_raw_bytes_are_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("UPDATE messages SET raw = ? WHERE id = 'M2'", (b"<Doc>2000000</Doc>",))
    result = check(populated)
    assert {p.message_id for p in result.problems} == {"M2"}
    assert all(p.seq is None for p in result.problems)
    assert any("raw bytes do not match" in p.what for p in result.problems)


async def test_edited_raw_with_its_sha256_column_is_still_caught_by_the_chain(populated: Path) -> None:
    forged = b"<Doc>forged</Doc>"
    with tamper(populated) as conn:
        conn.execute(
            "UPDATE messages SET raw = ?, sha256 = ? WHERE id = 'M3'", (forged, hashlib.sha256(forged).hexdigest())
        )
    result = check(populated)
    assert [(p.message_id, p.what) for p in result.problems] == [
        ("M3", "raw bytes do not match the sha256 in its 'received' event 7")
    ]


async def test_truncated_tail_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("DELETE FROM events WHERE seq >= 10")
    result = check(populated)
    assert [p.seq for p in result.problems] == [10, None, None]
    assert "10..11 missing: chain tail truncated" in result.problems[0].what
    # What the cut events had pinned no longer explains the rows: the routed state and the report.
    assert named(result) >= {
        "message M2: state edited: the row has 'routed', the chain's last state is 'accepted' (event 4)"
        " (or the events that changed it were deleted)",
        "message M2: report 'R2' (cursor 1) is not pinned by any 'reported' event: inserted, moved or renumbered"
        " behind the journal, or its event deleted",
    }


async def test_deleted_last_event_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("DELETE FROM events WHERE seq = ?", (LAST,))
    result = check(populated)
    # The reported event pinned the report: its absence shows as the truncated tail and an unpinned report.
    assert [p.seq for p in result.problems] == [LAST, None]
    assert "is not pinned by any 'reported' event" in result.problems[1].what


async def test_edited_report_xml_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("UPDATE reports SET xml = ? WHERE report_id = 'R2'", (b"<Document>RJCT</Document>",))
    result = check(populated)
    assert [(p.seq, p.message_id) for p in result.problems] == [(LAST, "M2"), (None, "M2")]
    assert all("XML" in p.what and "edited" in p.what for p in result.problems)


async def test_edited_xml_of_a_report_stored_with_its_message_is_named(db_path: Path) -> None:
    async with open_journal(db_path) as journal:
        rec = make_record("M1", state="rejected", report=make_report("R1"))
        await journal.commit_inbound(rec)
    with tamper(db_path) as conn:
        conn.execute("UPDATE reports SET xml = ? WHERE report_id = 'R1'", (b"<Document>ACCP</Document>",))
    assert named(check(db_path)) == {
        "event 3: report 'R1' (cursor 1) XML edited",  # the journal pinned it in the caller's reported event
        "message M1: report 'R1' (cursor 1) XML does not match its sha256: edited",
    }


async def test_missing_chain_head_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("DELETE FROM chain_head")
    assert any("chain head row is missing" in p.what for p in check(populated).problems)


async def test_events_appended_behind_the_journal_are_named(populated: Path) -> None:
    with tamper(populated) as conn:
        prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (LAST,)).fetchone()[0]
        detail = canonical_json({})
        digest = event_hash(prev, LAST + 1, "M1", "2025-03-01T12:00Z", "delivered", detail)
        conn.execute(
            "INSERT INTO events VALUES (?, 'M1', '2025-03-01T12:00Z', 'delivered', ?, ?, ?)",
            (LAST + 1, detail, prev, digest),
        )
    assert [p.seq for p in check(populated).problems] == [LAST + 1]


async def test_a_fully_rewritten_tail_needs_an_outside_anchor(populated: Path) -> None:
    anchor = check(populated).head
    assert anchor is not None
    # Rewrite the whole chain from seq 10 on, head included: internally consistent again.
    with tamper(populated) as conn:
        conn.execute("DELETE FROM events WHERE seq >= 10")
        seq, head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        conn.execute("UPDATE chain_head SET seq = ?, hash = ?", (seq, head))
        conn.execute("UPDATE messages SET state = 'accepted' WHERE id = 'M2'")
        conn.execute("DELETE FROM reports WHERE message_id = 'M2'")
    assert check(populated).ok  # what the chain alone cannot see
    result = check(populated, anchor=anchor)
    assert [p.seq for p in result.problems] == [LAST]
    assert "anchored event is missing" in result.problems[0].what


async def test_verify_reads_details_as_json(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("UPDATE events SET detail = 'not json' WHERE seq = 2")
    result = check(populated)
    assert [p.seq for p in result.problems] == [2]
    # The detail the chain protects is the JSON value, not its spelling: a reformatted detail is still the same.
    with tamper(populated) as conn:
        conn.execute("UPDATE events SET detail = ? WHERE seq = 2", (json.dumps({"message_type": "pacs.008.001.08"}),))
    assert check(populated).ok


# --- the rows the journal pins itself (pins.py): message columns, state, verdict, refs, report rows ---------------


@pytest.mark.parametrize(
    ("column", "value", "before"),
    [
        ("participant", "EVILBANK", "BANKA"),
        ("channel", "sftp", "http"),
        ("channel_ref", "10.0.0.66:1", "127.0.0.1:5000"),
        ("msg_id", "MSG-99", "MSG-3"),
        ("message_type", "pacs.009.001.08", "pacs.008.001.08"),
        ("family", "pacs.009", "pacs.008"),
        ("http_status", 422, 202),
        ("received_at", "2025-02-28T10:00:00.000000Z", RECEIVED_AT),
        ("holds_key", 0, 1),
    ],
)
async def test_edited_message_column_is_named_with_its_pinned_value(
    populated: Path, column: str, value: object, before: object
) -> None:
    with tamper(populated) as conn:
        conn.execute(f"UPDATE messages SET {column} = ? WHERE id = 'M3'", (value,))
    assert named(check(populated)) == {
        f"message M3: {column} edited: the row has {value!r}, the 'received' event 7 pinned {before!r}"
    }


async def test_edited_state_is_named_against_the_last_pinned_state(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("UPDATE messages SET state = 'rejected' WHERE id = 'M1'")  # pinned at intake (event 1)
        conn.execute("UPDATE messages SET state = 'delivered' WHERE id = 'M2'")  # pinned by append_events (event 10)
    assert named(check(populated)) == {
        "message M1: state edited: the row has 'rejected', the chain's last state is 'accepted' (event 1)"
        " (or the events that changed it were deleted)",
        "message M2: state edited: the row has 'delivered', the chain's last state is 'routed' (event 10)"
        " (or the events that changed it were deleted)",
    }


async def test_edited_verdict_is_named_but_a_reformatted_one_is_not(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("""UPDATE messages SET verdict = '{"summary": "accepted"}' WHERE id = 'M1'""")
    assert check(populated).ok  # the same JSON value, spelled differently
    with tamper(populated) as conn:
        conn.execute("""UPDATE messages SET verdict = '{"summary":"rejected"}' WHERE id = 'M1'""")
    assert named(check(populated)) == {
        "message M1: verdict edited: it does not match the digest in the 'received' event 1"
    }


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE refs SET value = 'E2E-forged' WHERE message_id = 'M1' AND kind = 'end_to_end_id'",
        "DELETE FROM refs WHERE message_id = 'M1' AND kind = 'uetr'",
        "INSERT INTO refs (message_id, kind, value) VALUES ('M1', 'uetr', 'u-extra')",
        "UPDATE refs SET message_id = 'M2' WHERE message_id = 'M1' AND kind = 'uetr'",
    ],
)
async def test_edited_refs_are_named(db_path: Path, edit: str) -> None:
    async with open_journal(db_path) as journal:
        await journal.commit_inbound(make_record("M1", refs=(("end_to_end_id", "E2E-1"), ("uetr", "u-1"))))
        await journal.commit_inbound(make_record("M2", msg_id="MSG-2"))
    assert check(db_path).ok
    with tamper(db_path) as conn:
        conn.execute(edit)
    problems = check(db_path).problems
    assert problems and all(p.what.startswith("refs edited") for p in problems)
    assert {p.message_id for p in problems} <= {"M1", "M2"} and "M1" in {p.message_id for p in problems}


async def test_refs_of_a_deleted_message_are_named(populated: Path) -> None:
    with tamper(populated) as conn:
        conn.execute("INSERT INTO refs (message_id, kind, value) VALUES ('GONE', 'uetr', 'u-9')")
    assert named(check(populated)) == {"message GONE: message row deleted: its refs remain"}


@pytest.mark.parametrize(
    ("column", "value", "before"),
    [
        ("participant", "BANKB", "BANKA"),  # moved into another participant's feed
        ("status", "RJCT", "ACSC"),
        ("report_id", "R9", "R2"),
        ("created_at", "2020-01-01T00:00:00.000000Z", RECEIVED_AT),
    ],
)
async def test_edited_report_column_is_named(populated: Path, column: str, value: str, before: str) -> None:
    with tamper(populated) as conn:
        conn.execute(f"UPDATE reports SET {column} = ? WHERE seq = 1", (value,))
    result = check(populated)
    assert [(p.seq, p.message_id) for p in result.problems] == [(LAST, "M2")]
    assert result.problems[0].what.endswith(f"{column} edited: the row has {value!r}, the event pinned {before!r}")


async def test_report_xml_edited_with_its_sha256_column_is_still_caught_by_the_chain(db_path: Path) -> None:
    async with open_journal(db_path) as journal:
        await journal.commit_inbound(make_record("M1", state="rejected", report=make_report("R1")))
    forged = b"<Document>ACCP</Document>"
    with tamper(db_path) as conn:
        conn.execute("UPDATE reports SET xml = ?, sha256 = ?", (forged, hashlib.sha256(forged).hexdigest()))
    assert named(check(db_path)) == {"event 3: report 'R1' (cursor 1) XML edited"}


async def test_report_inserted_or_renumbered_behind_the_journal_is_named(populated: Path) -> None:
    with tamper(populated) as conn:
        xml, digest = conn.execute("SELECT xml, sha256 FROM reports WHERE seq = 1").fetchone()
        conn.execute(
            "INSERT INTO reports (message_id, participant, report_id, message_type, msg_id, status, created_at,"
            " sha256, xml) VALUES ('M1', 'BANKA', 'R2', 'pacs.002.001.10', 'R2', 'ACSC', ?, ?, ?)",
            (RECEIVED_AT, digest, xml),
        )
    assert named(check(populated)) == {
        "message M1: report 'R2' (cursor 2) is not pinned by any 'reported' event: inserted, moved or renumbered"
        " behind the journal, or its event deleted"
    }
    with tamper(populated) as conn:
        conn.execute("DELETE FROM reports WHERE seq = 2")
        conn.execute("UPDATE reports SET seq = 5 WHERE seq = 1")
    assert {str(p) for p in check(populated).problems} == {
        f"event {LAST}: report 'R2' (cursor 1) is missing: deleted or renumbered",
        "message M2: report 'R2' (cursor 5) is not pinned by any 'reported' event: inserted, moved or renumbered"
        " behind the journal, or its event deleted",
    }


async def test_events_written_before_the_pins_still_verify(db_path: Path) -> None:
    # A journal written by the previous version: no "journal" key anywhere. Build one by stripping the pins and
    # re-hashing the whole chain, as that version would have written it.
    async with open_journal(db_path) as journal:
        await journal.commit_inbound(make_record("M1", state="rejected", report=make_report("R1")))
        await journal.commit_inbound(make_record("M2", msg_id="MSG-2"))
        await journal.append_events("M2", [("routed", {})], "routed", at=RECEIVED_AT)
    with tamper(db_path) as conn:
        prev = "0" * 64
        rows = conn.execute("SELECT seq, message_id, at, kind, detail FROM events ORDER BY seq").fetchall()
        for seq, mid, at, kind, detail in rows:
            plain = json.loads(detail)
            plain.pop("journal", None)
            if kind == "reported":
                plain.pop("sha256", None)  # the previous version kept the caller's reported detail as it was
            text = canonical_json(plain)
            digest = event_hash(prev, seq, mid, at, kind, text)
            conn.execute(
                "UPDATE events SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?", (text, prev, digest, seq)
            )
            prev = digest
        conn.execute("UPDATE chain_head SET hash = ?", (prev,))
    assert check(db_path).ok
    # Their rows are not pinned (only raw is): an edit there goes unseen, as it always did.
    with tamper(db_path) as conn:
        conn.execute("UPDATE messages SET participant = 'EVIL' WHERE id = 'M2'")
    assert check(db_path).ok
