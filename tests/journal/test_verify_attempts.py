"""`journal verify` covers the delivered bytes: every attempts row (the signed payload handed to the bank, its key
label, its outcome) against the hash-chained events that pinned and settled it, and names the row when it differs.

The first test runs the real daemon with a SoftHSM dev token and the simulated bank (one retry, then delivery), so
the rows are exactly what delivery writes; the others drive the journal's outbox through every way an attempt ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from pathlib import Path

import httpx
import trio

from switchd.journal import Journal, OutboxEntry, VerifyResult, open_journal
from tests.builders import Tx, pacs008
from tests.conftest import sim_bank, start_daemon, switchctl, write_config
from tests.hsm.conftest import DevToken, dev_token  # noqa: F401  (the session's SoftHSM dev token fixture)
from tests.hsm.test_daemon_signing import hsm_table

from .factory import RECEIVED_AT, make_record
from .tampering import check, tamper

XML = {"content-type": "application/xml", "authorization": "Bearer demo-bank-a"}
WAIT_S = 30
LATER = "2025-03-01T10:05:00.000000Z"


def named(result: VerifyResult) -> list[str]:
    return [str(p) for p in result.problems]


def copy_of(path: Path, target: Path) -> Path:
    """A consistent copy of the journal (SQLite's backup API: the WAL included) to tamper with."""
    src, dst = sqlite3.connect(path), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def attempt_event(path: Path, oid: str, attempt: int) -> int:
    """The seq of the `attempt` event that pinned the row."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT seq FROM events WHERE kind = 'attempt' AND json_extract(detail, '$.outbox_id') = ?"
            " AND json_extract(detail, '$.attempt') = ?",
            (oid, attempt),
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])


async def delivered_journal(tmp_path: Path, token: DevToken, nursery: trio.Nursery) -> tuple[Path, str, str]:
    """A journal written by the real daemon: SIGNED-1 delivered at the first attempt, RETRY-1 at the second, both
    signed by the HSM. Returns (journal path, SIGNED-1's id, RETRY-1's id) once the daemon has stopped."""
    # The simulated bank as the only route; the first delivery of RETRY-* fails (retryable), the next one goes through.
    bank = sim_bank(
        tmp_path / "receipts.jsonl",
        options='failures = [{ match = "RETRY*", times = 1 }]',
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    running = await start_daemon(write_config(tmp_path, extra=bank + hsm_table(token.settings)), nursery)
    ids = []
    async with httpx.AsyncClient(base_url=running.base_url, headers=XML, timeout=WAIT_S) as client:
        for msg_id in ("SIGNED-1", "RETRY-1"):
            r = await client.post("/v1/messages", content=pacs008(msg_id=msg_id, txs=[Tx(end_to_end_id=msg_id)]))
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        with trio.fail_after(WAIT_S):
            for mid in ids:
                while (await client.get(f"/v1/messages/{mid}")).json()["state"] not in ("delivered", "answered"):
                    await trio.sleep(0.05)
    await running.stop()
    return running.daemon.config.journal_path, ids[0], ids[1]


async def test_edits_of_delivered_signed_bytes_are_named(
    tmp_path: Path,
    dev_token: DevToken,  # noqa: F811  (the fixture imported above)
    nursery: trio.Nursery,
) -> None:
    path, signed, retried = await delivered_journal(tmp_path, dev_token, nursery)
    journal = Journal.open(path, readonly=True)
    try:
        (attempt,) = journal.attempts(f"{signed}.1")
        assert (attempt.key_label, attempt.outcome) == ("sig-rsa", "delivered")
        assert b"SignatureValue" in attempt.payload and b"Alice Debtor" in attempt.payload
        assert [a.outcome for a in journal.attempts(f"{retried}.1")] == ["retry", "delivered"]
    finally:
        journal.close()
    ok = check(path)
    assert ok.ok, ok.problems

    # Untouched: the command says so, exit 0.
    done = switchctl(path.parent.parent / "switchd.toml", "journal", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "journal ok" in done.stdout

    # One character of the signed bytes changed, as the reviewer did: named by message, part and attempt, exit 1.
    payload_edit = (
        "UPDATE attempts SET payload = CAST(replace(CAST(payload AS TEXT), 'Alice', 'Alicx') AS BLOB)"
        " WHERE outbox_id = ?"
    )
    edited = tmp_path / "edited"
    (edited / "var").mkdir(parents=True)
    copy_of(path, edited / "var" / "journal.sqlite")
    with tamper(edited / "var" / "journal.sqlite") as conn:
        assert conn.execute(payload_edit, (f"{signed}.1",)).rowcount == 1
    payload_problem = (
        f"message {signed}: attempt 1 of part 1: payload (the bytes sent) edited: it does not match the sha256 in"
        f" its 'attempt' event {attempt_event(path, f'{signed}.1', 1)}"
    )
    done = switchctl(write_config(edited), "journal", "verify")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[1:] == [f"  {payload_problem}"]

    # The payload edited together with the row's own sha256: the chain's event still pins the original digest.
    both = copy_of(path, tmp_path / "both.sqlite")
    with tamper(both) as conn:
        conn.create_function("sha256hex", 1, lambda b: hashlib.sha256(b).hexdigest())
        conn.execute(payload_edit, (f"{signed}.1",))
        conn.execute("UPDATE attempts SET sha256 = sha256hex(payload) WHERE outbox_id = ?", (f"{signed}.1",))
    assert named(check(both)) == [payload_problem]

    cases = {
        "key_label": (
            "UPDATE attempts SET key_label = 'sig-ec' WHERE outbox_id = :signed",
            f"message {signed}: attempt 1 of part 1: key_label edited: the row has 'sig-ec'",
        ),
        # The failed first attempt passed off as delivered (export picks the delivered attempt).
        "outcome": (
            "UPDATE attempts SET outcome = 'delivered' WHERE outbox_id = :retried AND attempt = 1",
            f"message {retried}: attempt 1 of part 1: outcome edited: the row has 'delivered'",
        ),
        "deleted": (
            "DELETE FROM attempts WHERE outbox_id = :signed",
            f"message {signed}: attempt 1 of part 1: its attempts row (the bytes sent) is missing",
        ),
        "inserted": (
            "INSERT INTO attempts (outbox_id, attempt, started_at, payload, sha256, key_label, possible_duplicate)"
            " SELECT outbox_id, 3, started_at, payload, sha256, key_label, 0 FROM attempts"
            " WHERE outbox_id = :retried AND attempt = 2",
            f"message {retried}: attempt 3 of part 1: no 'attempt' event pins this row",
        ),
        "renumbered": (
            "UPDATE attempts SET attempt = attempt + 10 WHERE outbox_id = :retried AND attempt = 1",
            f"message {retried}: attempt 11 of part 1: no 'attempt' event pins this row",
        ),
    }
    for case, (sql, expected) in cases.items():
        copy = copy_of(path, tmp_path / f"{case}.sqlite")
        with tamper(copy) as conn:
            assert conn.execute(sql, {"signed": f"{signed}.1", "retried": f"{retried}.1"}).rowcount == 1
        found = named(check(copy))
        assert any(p.startswith(expected) for p in found), (case, found)
    # A renumbered row leaves its event without a row as well.
    assert f"message {retried}: attempt 1 of part 1: its attempts row (the bytes sent) is missing" in " ".join(
        named(check(tmp_path / "renumbered.sqlite"))
    )


async def accepted(journal: Journal, mid: str, parts: int = 1) -> None:
    entries = tuple(OutboxEntry(p, "bank-b", "default", f"{mid}-P{p}", (0,)) for p in range(1, parts + 1))
    rec = make_record(mid, msg_id=f"MSG-{mid}", raw=f"<Doc>{mid}</Doc>".encode())
    await journal.commit_inbound(dataclasses.replace(rec, outbox=entries))


async def every_ending(db_path: Path) -> None:
    """Attempts ended every way the outbox ends them, each part of message A..E."""
    async with open_journal(db_path) as journal:
        for mid in "ABCDE":
            await accepted(journal, mid)
        # A: delivered, signed.
        n, _ = await journal.begin_attempt("A.1", LATER, b"<signed>A</signed>", b"<unsigned/>", "sig-rsa")
        await journal.finish_attempt("A.1", n, LATER, outcome="delivered", detail="receipt-A")
        # B: a retry, then failed for good.
        n, _ = await journal.begin_attempt("B.1", LATER, b"<B1/>", b"<B/>", None)
        await journal.finish_attempt("B.1", n, LATER, outcome="retry", detail="503", retry_at=LATER)
        n, _ = await journal.begin_attempt("B.1", LATER, b"<B2/>", b"<B/>", None)
        await journal.finish_attempt("B.1", n, LATER, outcome="failed", detail="refused")
        # C: a retry, then its bytes could not be built again (failed unsent: settles no attempt).
        n, _ = await journal.begin_attempt("C.1", LATER, b"<C1/>", b"<C/>", "sig-ec")
        await journal.finish_attempt("C.1", n, LATER, outcome="retry", detail="timeout", retry_at=LATER)
        assert await journal.fail_unsent("C.1", LATER, "cannot sign", None, None)
        # D: in flight when the daemon died (unknown), then re-sent as a possible duplicate and delivered.
        await journal.begin_attempt("D.1", LATER, b"<D1/>", b"<D/>", None)
        assert await journal.recover_inflight(LATER) == ["D.1"]
        n, dup = await journal.begin_attempt("D.1", LATER, b"<D2/>", b"<D/>", None)
        assert (n, dup) == (2, True)
        await journal.finish_attempt("D.1", n, LATER, outcome="delivered", detail=None)
        # E: in flight now.
        await journal.begin_attempt("E.1", LATER, b"<E1/>", b"<E/>", None)


async def test_every_way_an_attempt_ends_verifies_untouched(db_path: Path) -> None:
    await every_ending(db_path)
    result = check(db_path)
    assert result.ok, result.problems


async def test_edited_settlement_columns_are_named(db_path: Path) -> None:
    await every_ending(db_path)
    edits = {
        "UPDATE attempts SET detail = 'receipt-X' WHERE outbox_id = 'A.1'": (
            "message A: attempt 1 of part 1: detail edited: the row has 'receipt-X', its 'delivered' event"
        ),
        "UPDATE attempts SET finished_at = '2025-03-01T09:00:00.000000Z' WHERE outbox_id = 'B.1' AND attempt = 2": (
            "message B: attempt 2 of part 1: finished_at edited"
        ),
        "UPDATE attempts SET outcome = 'delivered' WHERE outbox_id = 'C.1'": (
            "message C: attempt 1 of part 1: outcome edited: the row has 'delivered', its 'attempt_failed' event"
        ),
        "UPDATE attempts SET outcome = 'delivered' WHERE outbox_id = 'D.1' AND attempt = 1": (
            "message D: attempt 1 of part 1: outcome edited: the row has 'delivered', its 'attempt_unknown' event"
        ),
        "UPDATE attempts SET possible_duplicate = 0 WHERE outbox_id = 'D.1' AND attempt = 2": (
            "message D: attempt 2 of part 1: possible_duplicate edited: the row has False"
        ),
        "UPDATE attempts SET outcome = 'delivered', finished_at = started_at WHERE outbox_id = 'E.1'": (
            "message E: attempt 1 of part 1: outcome edited: the row has 'delivered', the chain, which records no"
            " settlement (in flight)"
        ),
        "UPDATE attempts SET started_at = '2025-03-01T10:04:00.000000Z' WHERE outbox_id = 'E.1'": (
            "message E: attempt 1 of part 1: started_at edited"
        ),
        "UPDATE attempts SET key_label = NULL WHERE outbox_id = 'A.1'": (
            "message A: attempt 1 of part 1: key_label edited: the row has None, its 'attempt' event"
        ),
        "UPDATE attempts SET sha256 = '00' WHERE outbox_id = 'A.1'": (
            "message A: attempt 1 of part 1: the sha256 column was edited"
        ),
        "UPDATE outbox SET id = 'A.9' WHERE id = 'A.1'": "message A: attempt 1 of part 1: its outbox row is missing",
    }
    for i, (sql, expected) in enumerate(edits.items()):
        copy = copy_of(db_path, db_path.with_name(f"edit{i}.sqlite"))
        with tamper(copy) as conn:
            assert conn.execute(sql).rowcount == 1, sql
        found = named(check(copy))
        assert any(p.startswith(expected) for p in found), (sql, found)


async def test_an_edited_attempt_event_is_named_once_not_as_an_edited_row(db_path: Path) -> None:
    await every_ending(db_path)
    with tamper(db_path) as conn:
        # The digest in the chain edited (not the row): the chain walk names the event; the row is not accused.
        seq = conn.execute(
            "SELECT seq FROM events WHERE kind = 'attempt' AND json_extract(detail, '$.outbox_id') = 'A.1'"
        ).fetchone()[0]
        conn.execute("UPDATE events SET detail = json_set(detail, '$.sha256', '00') WHERE seq = ?", (seq,))
    assert named(check(db_path)) == [f"event {seq}: 'attempt' event content does not match its hash: edited"]


async def test_events_of_kind_attempt_that_name_no_row_are_not_attempts(db_path: Path) -> None:
    # Callers may chain events of any kind through append_events: one naming no outbox row is no delivery attempt.
    async with open_journal(db_path) as journal:
        await journal.commit_inbound(make_record("M1", received_at=RECEIVED_AT))
        await journal.append_events("M1", [("attempt", {"n": 1})], at=LATER)
    assert check(db_path).ok
