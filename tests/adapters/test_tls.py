"""TLS and client-certificate authentication against an in-process daemon, with real certificates made per test.

Material (tests/adapters/certs.py): a trusted CA (the daemon's `client_ca`), a server certificate for 127.0.0.1
and two client certificates signed by it (bank-a's, registered by `cert_sha256`, and a stranger's, registered by
nobody), and a client certificate signed by a second CA the daemon does not trust.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from switchd.config import load_config
from switchd.daemon import Daemon
from switchd.journal import Journal
from tests.adapters.certs import Issued, issue, make_ca
from tests.builders import pacs008
from tests.conftest import TOKENS, write_config

XML = {"Content-Type": "application/xml"}
REQUEST_TIMEOUT_S = 2.0


@dataclass
class Pki:
    ca: Issued
    server: Issued
    bank_a: Issued
    stranger: Issued  # signed by the trusted CA, but no participant has its fingerprint
    rogue: Issued  # signed by a CA the daemon does not trust


@dataclass
class TlsDaemon:
    daemon: Daemon
    host: str
    port: int
    pki: Pki

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def client(self, cert: Issued | None = None, *, token: str | None = None) -> httpx.AsyncClient:
        """An HTTPS client that trusts the test CA, optionally presenting `cert` and/or a bearer token."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert_path))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base_url, verify=ctx, headers=headers, timeout=10)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    d = tmp_path / "pki"
    ca = make_ca(d, "ca", "switchd test CA")
    rogue_ca = make_ca(d, "rogue-ca", "switchd test CA")  # same name, different key: only the signature differs
    return Pki(
        ca=ca,
        server=issue(ca, d, "server", "127.0.0.1", server_ip="127.0.0.1"),
        bank_a=issue(ca, d, "bank-a", "bank-a"),
        stranger=issue(ca, d, "stranger", "stranger"),
        rogue=issue(rogue_ca, d, "rogue", "bank-a"),
    )


@pytest.fixture
def tls_config(tmp_path: Path, pki: Pki) -> Path:
    tls = f'tls_cert = "{pki.server.cert_path}"\ntls_key = "{pki.server.key_path}"\nclient_ca = "{pki.ca.cert_path}"'
    path = write_config(tmp_path, tls=tls, bank_a_cert=f'cert_sha256 = "{pki.bank_a.sha256}"')
    text = path.read_text()
    assert "request_timeout_s = 10.0" in text  # the shared template's value, shortened for the slow-client test
    path.write_text(text.replace("request_timeout_s = 10.0", f"request_timeout_s = {REQUEST_TIMEOUT_S}"))
    return path


@pytest.fixture
async def tls_daemon(tls_config: Path, pki: Pki, nursery: trio.Nursery) -> AsyncIterator[TlsDaemon]:
    cfg = load_config(tls_config)
    assert cfg.http.client_ca == pki.ca.cert_path
    assert cfg.http.request_timeout_s == REQUEST_TIMEOUT_S
    d = Daemon(cfg)
    running = await nursery.start(d.run)
    host, port = running.http_addresses[0][:2]
    yield TlsDaemon(d, host, port, pki)
    d.request_stop()
    with trio.fail_after(30):
        await d.stopped.wait()


def _journal_row(daemon: Daemon, mid: str):  # -> MessageRow
    journal = Journal.open(daemon.config.journal_path, readonly=True)
    try:
        return journal.get(mid)
    finally:
        journal.close()


async def _assert_serves_https(tls_daemon: TlsDaemon) -> None:
    async with tls_daemon.client(tls_daemon.pki.bank_a) as c:
        r = await c.get("/v1/reports")
    assert r.status_code == 200, r.text


# 1 ---------------------------------------------------------------------------------------------------------------


async def test_client_cert_alone_authenticates_bank_a(tls_daemon: TlsDaemon) -> None:
    async with tls_daemon.client(tls_daemon.pki.bank_a) as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="TLS-CERT-1"), headers=XML)
        assert r.status_code == 202, r.text
        assert "authorization" not in r.request.headers
        mid = r.json()["id"]
        got = await c.get(f"/v1/messages/{mid}")
    assert got.status_code == 200, got.text
    # GET answers only the owner (anyone else gets 404), so a 200 already says the message is bank-a's
    assert got.json()["msg_id"] == "TLS-CERT-1"
    assert [e["kind"] for e in got.json()["events"]] == ["received", "validated", "accepted"]
    # GET does not show participant or channel_ref, so read them from the journal itself
    row = await trio.to_thread.run_sync(_journal_row, tls_daemon.daemon, mid)
    assert row is not None
    assert row.participant == "bank-a"
    assert row.channel == "http"
    # channel_ref is the TCP peer ("127.0.0.1:<client port>"), not the participant or the cert fingerprint
    assert row.channel_ref is not None and row.channel_ref.startswith("127.0.0.1:")
    # bank-b cannot see it, proving the participant came from the certificate and not from a default
    async with tls_daemon.client(token=TOKENS["bank-b"]) as b:
        assert (await b.get(f"/v1/messages/{mid}")).status_code == 404


# 2 ---------------------------------------------------------------------------------------------------------------


async def test_https_without_cert_or_token_is_401(tls_daemon: TlsDaemon) -> None:
    async with tls_daemon.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="TLS-ANON-1"), headers=XML)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await c.get("/v1/reports")).status_code == 401


async def test_bearer_token_over_server_only_tls_still_works(tls_daemon: TlsDaemon) -> None:
    async with tls_daemon.client(token=TOKENS["bank-a"]) as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="TLS-TOKEN-1"), headers=XML)
        assert r.status_code == 202, r.text
        assert (await c.get(f"/v1/messages/{r.json()['id']}")).status_code == 200


# 3 ---------------------------------------------------------------------------------------------------------------


async def test_cert_from_untrusted_ca_fails_the_handshake(tls_daemon: TlsDaemon) -> None:
    # What happens (observed, not assumed): the server's TLS handshake fails and the connection is closed, so
    # there is no HTTP response at all -- never a 401, and never bank-a, although the rogue cert's subject says
    # "bank-a". CERT_OPTIONAL only lets a client send *no* certificate; one that is sent must verify against
    # client_ca, or OpenSSL aborts the handshake (server.py catches that and drops the connection).
    # The client sees no "unknown ca" alert either: trio.SSLStream raises on the failed handshake without
    # flushing OpenSSL's pending alert, so the client just sees the TCP connection end. Under TLS 1.3 (the
    # default here) the client's side of the handshake completes before the server has judged the client
    # certificate, so httpx has already sent the request and sees "server disconnected" (RemoteProtocolError)
    # or, if the kernel answers the unread request with a RST, a ReadError; which one is a matter of timing.
    async with tls_daemon.client(tls_daemon.pki.rogue) as c:
        with pytest.raises(httpx.TransportError) as info:
            await c.get("/v1/reports")  # a GET: a failed POST leaves httpx's body generator unclosed
    assert isinstance(info.value, (httpx.RemoteProtocolError, httpx.ReadError)), repr(info.value)
    await _assert_serves_https(tls_daemon)


async def test_cert_from_untrusted_ca_fails_the_handshake_tls12(tls_daemon: TlsDaemon) -> None:
    # Under TLS 1.2 the server judges the client certificate inside the handshake, so the client's handshake
    # itself fails (ConnectError; the cause is an EOF, not an alert -- see the TLS 1.3 test above).
    ctx = ssl.create_default_context(cafile=str(tls_daemon.pki.ca.cert_path))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls_daemon.pki.rogue.cert_path), str(tls_daemon.pki.rogue.key_path))
    async with httpx.AsyncClient(base_url=tls_daemon.base_url, verify=ctx, timeout=10) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get("/v1/reports")
    await _assert_serves_https(tls_daemon)


# 4 ---------------------------------------------------------------------------------------------------------------


async def test_trusted_cert_of_no_participant_is_401(tls_daemon: TlsDaemon) -> None:
    async with tls_daemon.client(tls_daemon.pki.stranger) as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="TLS-STRANGER-1"), headers=XML)
        assert r.status_code == 401, r.text
        assert (await c.get("/v1/reports")).status_code == 401


# 5 ---------------------------------------------------------------------------------------------------------------


async def test_plain_http_to_the_tls_port_fails_cleanly(tls_daemon: TlsDaemon) -> None:
    plain = f"http://{tls_daemon.host}:{tls_daemon.port}"
    with trio.fail_after(REQUEST_TIMEOUT_S + 3):
        async with httpx.AsyncClient(base_url=plain, headers={"Authorization": f"Bearer {TOKENS['bank-a']}"}) as c:
            # the server's TLS layer rejects the cleartext request line and closes: no HTTP answer at all
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await c.post("/v1/messages", content=pacs008(msg_id="TLS-PLAIN-1"), headers=XML)
    await _assert_serves_https(tls_daemon)


# 6 ---------------------------------------------------------------------------------------------------------------


async def test_silent_tls_client_does_not_block_others_and_is_dropped(tls_daemon: TlsDaemon) -> None:
    silent = [await trio.open_tcp_stream(tls_daemon.host, tls_daemon.port) for _ in range(3)]
    try:
        started = trio.current_time()
        with trio.fail_after(REQUEST_TIMEOUT_S * 0.75):  # well before the silent clients' handshake times out
            async with tls_daemon.client(tls_daemon.pki.bank_a) as c:
                r = await c.post("/v1/messages", content=pacs008(msg_id="TLS-SLOW-1"), headers=XML)
        assert r.status_code == 202, r.text
        # the server gives up on each silent handshake after request_timeout_s and closes the connection
        with trio.fail_after(REQUEST_TIMEOUT_S + 3):
            for s in silent:
                assert await s.receive_some(1024) == b""
        assert trio.current_time() - started >= REQUEST_TIMEOUT_S * 0.9
    finally:
        for s in silent:
            await s.aclose()
    await _assert_serves_https(tls_daemon)


# 7 ---------------------------------------------------------------------------------------------------------------


async def test_client_that_resets_mid_handshake_does_not_take_the_daemon_down(tls_daemon: TlsDaemon) -> None:
    # a real ClientHello's first bytes, then a TCP RST (SO_LINGER 0): the server's handshake fails with ECONNRESET
    for _ in range(3):
        s = await trio.open_tcp_stream(tls_daemon.host, tls_daemon.port)
        await s.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await s.aclose()
    await trio.sleep(0.2)
    await _assert_serves_https(tls_daemon)
