"""The participant HTTP API against an in-process daemon on 127.0.0.1: every status code and what it carries."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import httpx
import trio
from lxml import etree

from tests.builders import Tx, pacs008, pain001, project_schema
from tests.conftest import RunningDaemon, sim_bank, start_daemon, write_config

XML = {"Content-Type": "application/xml"}
PACS002 = "{urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10}"


def _report_codes(report_xml: str) -> tuple[str, list[str]]:
    doc = etree.fromstring(report_xml.encode())
    assert project_schema("pacs.002.001.10").validate(doc), "status report must be valid pacs.002.001.10"
    grp = doc.find(f".//{PACS002}GrpSts")
    codes = [c.text or "" for c in doc.iter(f"{PACS002}Cd")]
    return (grp.text if grp is not None else ""), codes


async def test_accepts_valid_pacs008_and_shows_its_history(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="OK-1"), headers=XML)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["state"] == "accepted"
        assert body["message_type"] == "pacs.008.001.08"
        assert body["msg_id"] == "OK-1"
        assert r.headers["location"] == f"/v1/messages/{body['id']}"
        r2 = await c.get(f"/v1/messages/{body['id']}")
        assert r2.status_code == 200
        kinds = [e["kind"] for e in r2.json()["events"]]
        assert kinds == ["received", "validated", "accepted"]


async def test_bare_document_and_pain001_are_accepted(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="BARE-1", app_hdr=False), headers=XML)
        assert r.status_code == 202, r.text
        r = await c.post("/v1/messages", content=pain001(msg_id="PAIN-OK"), headers=XML)
        assert r.status_code == 202, r.text
        assert r.json()["message_type"] == "pain.001.001.09"


async def test_identical_resubmission_gets_the_original_answer(tmp_path: Path, nursery: trio.Nursery) -> None:
    # With a bank that answers, the message has moved on (answered) by the time it is sent again: the answer's
    # state and its current_state can only be told apart when they differ.
    daemon = await start_daemon(write_config(tmp_path, extra=sim_bank(tmp_path / "receipts.jsonl")), nursery)
    msg = pacs008(msg_id="IDEM-1")
    async with daemon.client() as c:
        first = await c.post("/v1/messages", content=msg, headers=XML)
        assert first.status_code == 202, first.text
        with trio.fail_after(30):
            while (await c.get(f"/v1/messages/{first.json()['id']}")).json()["state"] != "answered":
                await trio.sleep(0.05)
        again = await c.post("/v1/messages", content=msg, headers=XML)
        metrics = (await c.get("/metrics")).text
    await daemon.stop()
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["resubmission"] is True
    # The original answer, whatever has happened to the message since; where it is now is said separately.
    assert again.json()["state"] == first.json()["state"] == "accepted"
    assert again.json()["current_state"] == "answered"
    # Counted as a resubmission, not as a second accepted message.
    counted = 'switchd_messages_total{channel="http",message_type="pacs.008.001.08",outcome="%s"} 1.0'
    assert counted % "accepted" in metrics.splitlines()
    assert counted % "resubmitted" in metrics.splitlines()


async def test_used_msgid_with_other_content_is_409_du01(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        first = await c.post("/v1/messages", content=pacs008(msg_id="DUP-1"), headers=XML)
        other = pacs008(msg_id="DUP-1", txs=[Tx(amount="999.00")])
        r = await c.post("/v1/messages", content=other, headers=XML)
    assert first.status_code == 202
    assert r.status_code == 409
    body = r.json()
    assert [e["code"] for e in body["errors"]] == ["DU01"]
    status, codes = _report_codes(body["status_report"])
    assert status == "RJCT"
    assert "DU01" in codes


async def test_same_msgid_from_another_participant_is_not_a_duplicate(daemon: RunningDaemon) -> None:
    async with daemon.client("bank-a") as a, daemon.client("bank-b") as b:
        ra = await a.post("/v1/messages", content=pacs008(msg_id="SHARED-1"), headers=XML)
        msg_b = pacs008(
            msg_id="SHARED-1",
            instg_bic="BBBBDEFFXXX",
            instd_bic="AAAAUS33XXX",
            txs=[Tx(dbtr_agt_bic="BBBBDEFFXXX", cdtr_agt_bic="AAAAUS33XXX")],
        )
        rb = await b.post("/v1/messages", content=msg_b, headers=XML)
    assert ra.status_code == 202
    assert rb.status_code == 202, rb.text


async def test_schema_invalid_message_is_422_with_every_error_and_a_report(daemon: RunningDaemon) -> None:
    bad = pacs008(msg_id="BAD-XSD").replace(b"<NbOfTxs>1</NbOfTxs>", b"<NbOfTxs>one</NbOfTxs>")
    bad = bad.replace(b"<SttlmMtd>CLRG</SttlmMtd>", b"<SttlmMtd>XXXX</SttlmMtd>")
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=bad, headers=XML)
    assert r.status_code == 422
    errors = r.json()["errors"]
    paths = {e["path"] for e in errors}
    assert "/Document/FIToFICstmrCdtTrf/GrpHdr/NbOfTxs" in paths
    assert "/Document/FIToFICstmrCdtTrf/GrpHdr/SttlmInf/SttlmMtd" in paths
    assert all(e["code"] == "FF01" and e["line"] >= 1 for e in errors)
    status, codes = _report_codes(r.json()["status_report"])
    assert status == "RJCT"
    assert codes.count("FF01") >= 2


async def test_business_rule_violation_is_422_with_its_reason_code(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="BAD-CNT", nb_of_txs="3"), headers=XML)
        assert r.status_code == 422
        codes = [e["code"] for e in r.json()["errors"]]
        assert codes and all(code.startswith("AM") for code in codes)
        mid = r.json()["id"]
        rep = await c.get(f"/v1/messages/{mid}/report")
    assert rep.status_code == 200
    assert rep.headers["content-type"].startswith("application/xml")
    status, report_codes = _report_codes(rep.text)
    assert status == "RJCT"
    assert set(codes) <= set(report_codes)
    # Written by the switch to the bank that sent it: GrpHdr InstgAgt / InstdAgt say so.
    grp = etree.fromstring(rep.text.encode())[0][0]
    ns = {"p": etree.QName(grp).namespace}
    assert grp.findtext("p:InstgAgt/p:FinInstnId/p:BICFI", namespaces=ns) == "SWTCUS33XXX"
    assert grp.findtext("p:InstdAgt/p:FinInstnId/p:BICFI", namespaces=ns) == "AAAAUS33XXX"


async def test_rejected_msgid_can_be_corrected_and_resent(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        bad = await c.post("/v1/messages", content=pacs008(msg_id="FIX-1", nb_of_txs="2"), headers=XML)
        good = await c.post("/v1/messages", content=pacs008(msg_id="FIX-1"), headers=XML)
    assert bad.status_code == 422
    assert good.status_code == 202


async def test_not_well_formed_and_not_iso_are_400(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        broken = await c.post("/v1/messages", content=b"<Document><unclosed></Document>", headers=XML)
        not_iso = await c.post("/v1/messages", content=b"<order xmlns='urn:shop'><x/></order>", headers=XML)
        unknown = await c.post(
            "/v1/messages",
            content=b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'/>",
            headers=XML,
        )
    for r in (broken, not_iso, unknown):
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["code"] == "FF01"
    assert "not well-formed" in broken.json()["errors"][0]["detail"]


async def test_authentication_401_and_impersonation_403(daemon: RunningDaemon) -> None:
    async with daemon.client(None) as anon:
        r = await anon.post("/v1/messages", content=pacs008(), headers=XML)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await anon.post("/v1/messages", content=pacs008(), headers={**XML, "Authorization": "Bearer nope"})
        assert r.status_code == 401
    # bank-b sends a message whose instructing agent is bank-a's BIC
    async with daemon.client("bank-b") as b:
        r = await b.post("/v1/messages", content=pacs008(msg_id="IMPOSTOR"), headers=XML)
    assert r.status_code == 403
    assert r.json()["state"] == "rejected"
    _, codes = _report_codes(r.json()["status_report"])
    assert codes


async def _raw_exchange(base_url: str, head: bytes, body_chunks: list[bytes]) -> tuple[int, bytes]:
    """Send a request by hand on a socket and read the status line: httpx cannot send a body it will not finish."""
    host, port = base_url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(head)
        received = b""
        with trio.move_on_after(10):
            for chunk in body_chunks:
                try:
                    await stream.send_all(chunk)
                except trio.BrokenResourceError:
                    break  # the server answered and closed: the rest of the body was never wanted
            while b"\r\n\r\n" not in received:
                data = await stream.receive_some(65536)
                if not data:
                    break
                received += data
    status_line = received.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), received


async def test_declared_body_over_the_limit_is_413_before_it_is_read(daemon: RunningDaemon) -> None:
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-bank-a\r\n"
        b"Content-Type: application/xml\r\nContent-Length: 2000000\r\n\r\n"
    )
    status, received = await _raw_exchange(daemon.base_url, head, [])  # no body byte sent at all
    assert status == 413
    assert b"connection: close" in received.lower()


async def test_chunked_body_over_the_limit_is_413(daemon: RunningDaemon) -> None:
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-bank-a\r\n"
        b"Content-Type: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"y" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 40  # 2.6 MB against a 1 MiB limit
    status, _ = await _raw_exchange(daemon.base_url, head, chunks)
    assert status == 413


async def test_media_type_and_method(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=pacs008(), headers={"Content-Type": "application/json"})
        assert r.status_code == 415
        r = await c.get("/v1/messages")
        assert r.status_code == 405
        r = await c.post("/v1/messages", content=pacs008(msg_id="AFTER-415"), headers=XML)
        assert r.status_code == 202


async def test_participants_see_only_their_own_messages(daemon: RunningDaemon) -> None:
    async with daemon.client("bank-a") as a, daemon.client("bank-b") as b:
        mid = (await a.post("/v1/messages", content=pacs008(msg_id="MINE"), headers=XML)).json()["id"]
        assert (await a.get(f"/v1/messages/{mid}")).status_code == 200
        assert (await b.get(f"/v1/messages/{mid}")).status_code == 404
        assert (await b.get(f"/v1/messages/{mid}/report")).status_code == 404


async def test_reports_are_paged_per_participant(daemon: RunningDaemon) -> None:
    async with daemon.client("bank-a") as a, daemon.client("bank-b") as b:
        for i in range(5):
            r = await a.post("/v1/messages", content=pacs008(msg_id=f"RJ-{i}", nb_of_txs="9"), headers=XML)
            assert r.status_code == 422
        page1 = (await a.get("/v1/reports", params={"limit": 3})).json()
        page2 = (await a.get("/v1/reports", params={"after": page1["next"], "limit": 3})).json()
        others = (await b.get("/v1/reports")).json()
    assert len(page1["reports"]) == 3
    assert len(page2["reports"]) == 2
    ids = [r["message_id"] for r in page1["reports"] + page2["reports"]]
    assert len(set(ids)) == 5
    assert all(r["status"] == "RJCT" for r in page1["reports"])
    assert others["reports"] == []


async def test_a_report_cursor_out_of_range_is_400_not_a_server_error(daemon: RunningDaemon) -> None:
    async with daemon.client("bank-a") as a:
        for after in ("99999999999999999999999", "-1", "x"):
            r = await a.get("/v1/reports", params={"after": after})
            assert r.status_code == 400, (after, r.text)
            assert r.json()["error"] == "bad_query"


async def test_health_readiness_and_metrics(daemon: RunningDaemon) -> None:
    async with daemon.client(None) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).json()["ready"] is True
    async with daemon.client() as c:
        await c.post("/v1/messages", content=pacs008(msg_id="M-1"), headers=XML)
        await c.post("/v1/messages", content=pacs008(msg_id="M-2", nb_of_txs="7"), headers=XML)
        text = (await c.get("/metrics")).text
    assert 'switchd_messages_total{channel="http",message_type="pacs.008.001.08",outcome="accepted"} 1.0' in text
    assert 'switchd_messages_total{channel="http",message_type="pacs.008.001.08",outcome="rejected"} 1.0' in text
    assert "switchd_intake_seconds_bucket" in text


async def test_draining_daemon_answers_503_and_is_not_ready(daemon: RunningDaemon) -> None:
    # What SIGTERM does first (the real signal is exercised in tests/test_daemon_process.py); with nothing in
    # flight the drain would otherwise close the listener at once.
    daemon.daemon.state.draining = True
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="LATE"), headers=XML)
        ready = await c.get("/readyz")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert ready.status_code == 503
    assert ready.json()["draining"] is True


async def test_keep_alive_serves_many_requests_on_one_connection(daemon: RunningDaemon) -> None:
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        base_url=daemon.base_url, headers={"Authorization": "Bearer demo-bank-a"}, limits=limits
    ) as c:
        for i in range(20):
            r = await c.post("/v1/messages", content=pacs008(msg_id=f"KA-{i}"), headers=XML)
            assert r.status_code == 202


async def test_client_reset_mid_body_does_not_take_the_daemon_down(daemon: RunningDaemon) -> None:
    host, port = daemon.base_url.removeprefix("http://").split(":")
    for _ in range(3):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-bank-a\r\n"
            b"Content-Type: application/xml\r\nContent-Length: 5000\r\n\r\n<Document"
        )
        # SO_LINGER 0: close sends RST, as a crashed client or a middlebox would
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
    await trio.sleep(0.2)
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="AFTER-RST"), headers=XML)
    assert r.status_code == 202
