"""Reads: search filters and order, resolve, report paging, stats."""

from __future__ import annotations

import pytest

from switchd.journal import Journal

from .factory import make_record, make_report


def at(minute: int) -> str:
    return f"2025-03-01T10:{minute:02d}:00.000000Z"


@pytest.fixture
async def filled(journal: Journal) -> Journal:
    specs = [
        # id, participant, message_type, state, msg_id, minute, refs
        ("M1", "BANKA", "pacs.008.001.08", "accepted", "A-1", 1, (("end_to_end_id", "E1"), ("uetr", "U1"))),
        ("M2", "BANKA", "pacs.008.001.08", "rejected", "A-2", 2, (("end_to_end_id", "E2"),)),
        ("M3", "BANKB", "pacs.009.001.08", "accepted", "B-1", 3, (("end_to_end_id", "E1"), ("uetr", "U3"))),
        ("M4", "BANKB", "pain.001.001.09", "accepted", "B-2", 4, (("end_to_end_id", "E4"),)),
        ("M5", "BANKA", None, "rejected", None, 5, ()),
        ("M6", "BANKA", "pacs.008.001.08", "accepted", "A-3", 6, (("tx_id", "E1"),)),
    ]
    for mid, participant, mtype, state, msg_id, minute, refs in specs:
        family = ".".join(mtype.split(".")[:2]) if mtype else None
        rec = make_record(
            mid,
            participant=participant,
            message_type=mtype,
            family=family,
            state=state,
            msg_id=msg_id,
            received_at=at(minute),
            refs=refs,
            raw=f"<Document>{mid}</Document>".encode(),
        )
        await journal.commit_inbound(rec)
    return journal


def ids(rows) -> list[str]:
    return [r.id for r in rows]


async def test_search_without_filters_is_newest_first(filled: Journal) -> None:
    assert ids(filled.search()) == ["M6", "M5", "M4", "M3", "M2", "M1"]
    assert ids(filled.search(limit=2)) == ["M6", "M5"]


async def test_search_filters(filled: Journal) -> None:
    assert ids(filled.search(participant="BANKB")) == ["M4", "M3"]
    assert ids(filled.search(state="rejected")) == ["M5", "M2"]
    assert ids(filled.search(msg_id="A-2")) == ["M2"]
    assert ids(filled.search(end_to_end_id="E1")) == ["M3", "M1"]  # M6 has E1 as tx_id, not as EndToEndId
    assert ids(filled.search(uetr="U3")) == ["M3"]
    assert ids(filled.search(since=at(2), until=at(4))) == ["M3", "M2"]  # since inclusive, until exclusive
    assert ids(filled.search(participant="BANKA", state="accepted", message_type="pacs.008")) == ["M6", "M1"]
    assert filled.search(participant="NOBODY") == []


async def test_search_message_type_prefix_and_glob(filled: Journal) -> None:
    assert ids(filled.search(message_type="pacs")) == ["M6", "M3", "M2", "M1"]
    assert ids(filled.search(message_type="pacs.008")) == ["M6", "M2", "M1"]
    assert ids(filled.search(message_type="pacs.008*")) == ["M6", "M2", "M1"]
    assert ids(filled.search(message_type="pacs.00[89]*")) == ["M6", "M3", "M2", "M1"]
    assert ids(filled.search(message_type="pain.001.001.09")) == ["M4"]
    assert ids(filled.search(message_type="*.001.001.*")) == ["M4"]


async def test_resolve_matches_id_msg_id_uetr_and_end_to_end_id(filled: Journal) -> None:
    assert ids(filled.resolve("M2")) == ["M2"]
    assert ids(filled.resolve("B-2")) == ["M4"]
    assert ids(filled.resolve("U1")) == ["M1"]
    assert ids(filled.resolve("E1")) == ["M3", "M1"]
    assert filled.resolve("nothing") == []


async def test_reports_page_by_cursor_per_participant(journal: Journal) -> None:
    await journal.commit_inbound(make_record("MA", participant="BANKA", msg_id="A"))
    await journal.commit_inbound(make_record("MB", participant="BANKB", msg_id="B"))
    for i in range(5):
        await journal.add_report("MA", make_report(f"RA{i}"), "BANKA")
        await journal.add_report("MB", make_report(f"RB{i}"), "BANKB")
    # A report stored with the message counts too.
    rejected = make_record("MC", participant="BANKA", state="rejected", raw=b"<c/>", report=make_report("RC"))
    await journal.commit_inbound(rejected)

    seen: list[str] = []
    cursor = 0
    pages = 0
    while True:
        rows, nxt = journal.reports("BANKA", after=cursor, limit=2)
        if not rows:
            assert nxt == cursor  # an empty page keeps the cursor
            break
        assert all(r.participant == "BANKA" for r in rows)
        assert [r.seq for r in rows] == sorted(r.seq for r in rows) and rows[0].seq > cursor
        assert nxt == rows[-1].seq
        seen += [r.report_id for r in rows]
        cursor = nxt
        pages += 1
    assert seen == ["RA0", "RA1", "RA2", "RA3", "RA4", "RC"]
    assert pages == 3
    # Nothing is missed or repeated when more reports arrive after a client has read to the end.
    await journal.add_report("MA", make_report("RA5"), "BANKA")
    rows, _ = journal.reports("BANKA", after=cursor)
    assert [r.report_id for r in rows] == ["RA5"]


async def test_stats_count_by_state_and_type(filled: Journal) -> None:
    stats = filled.stats()
    assert stats["messages"] == 6
    assert stats["by_state"] == {"accepted": 4, "rejected": 2}
    assert stats["by_message_type"] == {
        "unknown": 1,
        "pacs.008.001.08": 3,
        "pacs.009.001.08": 1,
        "pain.001.001.09": 1,
    }
    assert stats["events"] == stats["chain_head_seq"] == 16  # 4 accepted x 3 + 2 rejected x 2
    assert stats["reports"] == 0
