"""Journal.related on a real SQLite journal: which references link a return, cancellation or resolution to the
payment it is about, and which do not (EndToEndId alone, another participant's payment, itself, a rejected copy)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from switchd.iso.refs import original_pair
from switchd.journal import Journal, MessageNotFound, OutboxEntry

from .factory import make_record


def at(minute: int) -> str:
    return f"2025-03-01T10:{minute:02d}:00.000000Z"


def payment(e2e: str, uetr: str | None) -> tuple[tuple[str, str], ...]:
    return (("end_to_end_id", e2e),) + ((("uetr", uetr),) if uetr else ())


def about(msg_id: str | None, e2e: str | None, uetr: str | None) -> tuple[tuple[str, str], ...]:
    """The refs searchable_refs writes for a message naming one original transaction."""
    refs: list[tuple[str, str]] = []
    if e2e:
        refs += [("end_to_end_id", e2e), ("original_end_to_end_id", e2e)]
    if uetr:
        refs += [("uetr", uetr), ("original_uetr", uetr)]
    if msg_id:
        refs.append(("original_msg_id", msg_id))
    if msg_id and e2e:
        refs.append(("original_msg_e2e", original_pair(msg_id, e2e)))
    return tuple(refs)


async def add(
    journal: Journal,
    mid: str,
    minute: int,
    *,
    participant: str = "BANKA",
    message_type: str = "pacs.008.001.08",
    msg_id: str,
    refs: tuple[tuple[str, str], ...],
    state: str = "accepted",
    outbox: tuple[OutboxEntry, ...] = (),
) -> None:
    record = make_record(
        mid,
        participant=participant,
        message_type=message_type,
        family=".".join(message_type.split(".")[:2]),
        msg_id=msg_id,
        state=state,
        received_at=at(minute),
        refs=refs,
        raw=f"<Document>{mid}</Document>".encode(),
    )
    await journal.commit_inbound(replace(record, outbox=outbox))


def related(journal: Journal, mid: str) -> dict[str, str]:
    return {r.message.id: r.relation for r in journal.related(mid)}


@pytest.fixture
async def payments(journal: Journal) -> Journal:
    # Two participants' payments with the same EndToEndId (each unique only within its sender's messages).
    await add(journal, "PA", 1, msg_id="ORIG-1", refs=payment("E1", "U-A"))
    await add(journal, "PB", 2, participant="BANKB", msg_id="ORIG-B", refs=payment("E1", "U-B"))
    return journal


async def test_msg_id_and_end_to_end_id_link_only_that_participants_payment(payments: Journal) -> None:
    await add(
        payments, "R1", 3, participant="BANKB", message_type="pacs.004.001.09", msg_id="RTR-1",
        refs=about("ORIG-1", "E1", None),
    )  # fmt: skip
    assert related(payments, "R1") == {"PA": "original"}
    (row,) = payments.related("R1")
    assert row.via == ("msg_id+end_to_end_id ORIG-1/E1",)
    assert related(payments, "PA") == {"R1": "referrer"}
    assert related(payments, "PB") == {}


async def test_uetr_alone_is_enough_and_an_end_to_end_id_alone_is_not(payments: Journal) -> None:
    await add(
        payments, "C1", 3, message_type="camt.056.001.08", msg_id="CXL-1", refs=about(None, "E1", "U-B"),
    )  # fmt: skip
    await add(payments, "C2", 4, message_type="camt.056.001.08", msg_id="CXL-2", refs=about(None, "E1", None))
    assert related(payments, "C1") == {"PB": "original"}
    assert related(payments, "C2") == {}
    assert related(payments, "PB") == {"C1": "referrer"}
    assert related(payments, "PA") == {}


async def test_messages_about_the_same_original_are_siblings(payments: Journal) -> None:
    await add(
        payments, "R1", 3, participant="BANKB", message_type="pacs.004.001.09", msg_id="RTR-1",
        refs=about("ORIG-1", "E1", "U-A"),
    )  # fmt: skip
    await add(payments, "C1", 4, message_type="camt.056.001.08", msg_id="CXL-1", refs=about("ORIG-1", "E1", "U-A"))
    await add(
        payments, "A1", 5, participant="BANKB", message_type="camt.029.001.09", msg_id="RSL-1",
        refs=about("ORIG-1", "E1", "U-A"),
    )  # fmt: skip
    # The original lists all three, oldest first; none of them is taken for an original of another (they hold
    # the payment's ids only as an original's).
    assert [(r.message.id, r.relation) for r in payments.related("PA")] == [
        ("R1", "referrer"),
        ("C1", "referrer"),
        ("A1", "referrer"),
    ]
    assert related(payments, "A1") == {"PA": "original", "R1": "sibling", "C1": "sibling"}
    vias = {r.message.id: r.via for r in payments.related("A1")}
    assert vias["PA"] == ("uetr U-A", "msg_id+end_to_end_id ORIG-1/E1")
    assert vias["C1"] == ("original PA",)


async def test_unknown_original_and_no_self_link(payments: Journal) -> None:
    await add(
        payments, "R9", 3, participant="BANKB", message_type="pacs.004.001.09", msg_id="RTR-9",
        refs=about("NEVER-SENT", "E404", "U-404"),
    )  # fmt: skip
    assert payments.related("R9") == []
    # A message naming its own MsgId as the original's (no transaction): still not related to itself.
    await add(payments, "Q1", 4, message_type="pacs.028.001.03", msg_id="SELF", refs=(("original_msg_id", "SELF"),))
    assert payments.related("Q1") == []
    with pytest.raises(MessageNotFound):
        payments.related("NO-SUCH")


async def test_a_whole_message_reference_links_by_msg_id_only_without_transactions(payments: Journal) -> None:
    await add(payments, "Q1", 3, message_type="pacs.028.001.03", msg_id="REQ-1", refs=(("original_msg_id", "ORIG-1"),))
    assert related(payments, "Q1") == {"PA": "original"}
    # With a transaction named, the MsgId alone is not enough: its EndToEndId must be in that message.
    await add(payments, "Q2", 4, message_type="pacs.028.001.03", msg_id="REQ-2", refs=about("ORIG-1", "E-OTHER", None))
    assert related(payments, "Q2") == {}


async def test_a_rejected_copy_counts_only_when_nothing_else_matches(journal: Journal) -> None:
    # Rejected, corrected and sent again under the same MsgId, EndToEndId and UETR.
    await add(journal, "P1", 1, msg_id="ORIG-3", refs=payment("E3", "U3"), state="rejected")
    await add(journal, "P2", 2, msg_id="ORIG-3", refs=payment("E3", "U3"))
    await add(journal, "R1", 3, message_type="pacs.004.001.09", msg_id="RTR-3", refs=about("ORIG-3", "E3", "U3"))
    assert related(journal, "R1") == {"P2": "original"}
    assert related(journal, "P2") == {"R1": "referrer"}
    assert related(journal, "P1") == {}
    # Only a rejected one: it is what the message names (an operator wants to see that).
    await add(journal, "P4", 4, msg_id="ORIG-4", refs=payment("E4", None), state="rejected")
    await add(journal, "R4", 5, message_type="camt.056.001.08", msg_id="CXL-4", refs=about("ORIG-4", "E4", None))
    assert related(journal, "R4") == {"P4": "original"}


async def test_a_bank_names_the_msg_id_of_the_part_it_received(journal: Journal) -> None:
    parts = (
        OutboxEntry(part=0, connector="sim", route="default", msg_id="SPLIT-1P00000", tx_indexes=(0,)),
        OutboxEntry(part=1, connector="sim2", route="to-c", msg_id="SPLIT-1P00001", tx_indexes=(1,)),
    )
    await add(journal, "P1", 1, msg_id="SPLIT-1", refs=payment("S1", None) + payment("S2", None), outbox=parts)
    await add(
        journal, "R1", 2, participant="BANKC", message_type="pacs.004.001.09", msg_id="RTR-S",
        refs=about("SPLIT-1P00001", "S2", None),
    )  # fmt: skip
    assert related(journal, "R1") == {"P1": "original"}
    assert related(journal, "P1") == {"R1": "referrer"}
