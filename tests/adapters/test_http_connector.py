"""HTTP connector against a real HTTP server on 127.0.0.1 (switchd's own h11 server as a fake bank): what the bank
receives, how each answer is classified, timeouts, connection reuse, and TLS with a client certificate."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from adapters.http.api import Request, Response
from adapters.http.connector import HttpConnector, HttpConnectorSettings, redact_url
from adapters.http.server import serve_http
from switchd.config import HttpConfig
from switchd.connectors import Delivery, DeliveryFailed
from tests.adapters.certs import Issued, issue, make_ca
from tests.builders import pacs008

SECRET_BODY = b"bank-internal-detail-7f3a"  # a body the connector must never copy into its errors


@dataclass
class FakeBank:
    """Answers by path: /json -> 202 {"id": ...}; /plain -> 200 text; /status/N -> N; /hang -> never;
    /mtls -> 201 only with a client certificate, else 403."""

    base_url: str = ""
    requests: list[Request] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        path = request.target.split("?")[0]
        if path == "/json":
            return Response.json(202, {"id": "BANK-REF-42", "state": "received"})
        if path == "/plain":
            return Response(200, b"thanks", "text/plain")
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            headers = (("Location", "/elsewhere"),) if 300 <= code < 400 else ()
            return Response(code, SECRET_BODY, "text/plain", headers)
        if path == "/hang":
            await trio.sleep_forever()
        if path == "/mtls":
            if request.peer_cert_sha256 is None:
                return Response(403, SECRET_BODY, "text/plain")
            return Response.json(201, {"id": request.peer_cert_sha256})
        return Response(404, SECRET_BODY, "text/plain")


def http_config(tls: tuple[Issued, Issued] | None = None) -> HttpConfig:
    """127.0.0.1, any port; with `tls` (server cert, CA), HTTPS accepting client certificates from that CA."""
    server, ca = tls if tls else (None, None)
    return HttpConfig(
        host="127.0.0.1",
        port=0,
        max_body_bytes=10 * 1024 * 1024,
        tls_cert=server.cert_path if server else None,
        tls_key=server.key_path if server else None,
        client_ca=ca.cert_path if ca else None,
        request_timeout_s=30.0,
        max_connections=64,
    )


async def start_bank(nursery: trio.Nursery, tls: tuple[Issued, Issued] | None = None) -> FakeBank:
    bank = FakeBank()
    addrs = await nursery.start(serve_http, http_config(tls), bank.handle)
    host, port = addrs[0][:2]
    bank.base_url = f"{'https' if tls else 'http'}://{host}:{port}"
    return bank


def delivery(*, outbox_id: str = "O-1", attempt: int = 1, payload: bytes | None = None) -> Delivery:
    return Delivery(
        outbox_id=outbox_id,
        message_id="M-1",
        message_type="pacs.008.001.08",
        msg_id="MSG-1",
        payload=payload if payload is not None else pacs008(),
        attempt=attempt,
        possible_duplicate=attempt > 1,
    )


@pytest.fixture
async def bank(nursery: trio.Nursery) -> FakeBank:
    return await start_bank(nursery)


@pytest.fixture
async def connector_for(bank: FakeBank) -> AsyncIterator[Callable[..., HttpConnector]]:
    """Connectors to the fake bank's `path`, closed after the test."""
    made: list[HttpConnector] = []

    def make(path: str, **overrides: object) -> HttpConnector:
        conn = HttpConnector("bank-http", HttpConnectorSettings(url=bank.base_url + path, **overrides))  # type: ignore[arg-type]
        made.append(conn)
        return conn

    yield make
    for conn in made:
        await conn.aclose()


async def test_posts_the_exact_payload_with_its_headers(bank, connector_for):
    conn = connector_for("/json", headers=(("X-Api-Key", "k-123"),))
    payload = pacs008(msg_id="MSG-H")
    receipt = await conn.deliver(delivery(outbox_id="O-77", attempt=3, payload=payload))
    assert receipt == "BANK-REF-42"
    (req,) = bank.requests
    assert req.method == "POST"
    assert req.body == payload
    assert req.headers["content-type"] == "application/xml"
    assert req.headers["idempotency-key"] == "O-77"
    assert req.headers["x-switchd-attempt"] == "3"
    assert req.headers["x-switchd-possible-duplicate"] == "true"
    assert req.headers["x-switchd-message-type"] == "pacs.008.001.08"
    assert req.headers["x-api-key"] == "k-123"


async def test_plain_2xx_receipt_is_the_status_line(bank, connector_for):
    conn = connector_for("/plain")
    assert await conn.deliver(delivery()) == "HTTP 200 OK"
    assert bank.requests[0].headers["x-switchd-possible-duplicate"] == "false"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (413, False),
        (422, False),
        (301, False),
        (307, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
    ],
)
async def test_answer_classification(bank, connector_for, status, retryable):
    conn = connector_for(f"/status/{status}")
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery())
    assert info.value.retryable is retryable
    assert str(status) in info.value.reason
    assert SECRET_BODY.decode() not in info.value.reason
    assert len(bank.requests) == 1  # redirects are not followed


async def test_connection_refused_is_retryable(nursery):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = HttpConnector("bank-http", HttpConnectorSettings(url=f"http://127.0.0.1:{port}/in"))
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery())
    assert info.value.retryable is True
    assert "ConnectError" in info.value.reason
    await conn.aclose()


async def test_a_bank_that_never_answers_times_out_retryable(bank, connector_for):
    conn = connector_for("/hang", timeout_s=0.3)
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery())
    assert info.value.retryable is True
    assert "no answer" in info.value.reason
    assert len(bank.requests) == 1  # the bank did get it: the outbox will mark the next attempt


async def test_connections_are_kept_alive_between_deliveries(bank, connector_for):
    conn = connector_for("/json")
    for i in range(5):
        await conn.deliver(delivery(outbox_id=f"O-{i}"))
    assert len(bank.requests) == 5
    assert len({r.peer for r in bank.requests}) == 1  # one TCP connection (same client port) for all five


async def test_credentials_in_the_url_never_reach_errors(bank):
    url = bank.base_url.replace("http://", "http://user:hunter2@") + "/status/500?token=s3cr3t"
    conn = HttpConnector("bank-http", HttpConnectorSettings(url=url))
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery())
    assert "hunter2" not in info.value.reason and "s3cr3t" not in info.value.reason
    assert redact_url(url) == bank.base_url + "/status/500"
    await conn.aclose()


# -- TLS ----------------------------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    other_ca: Issued
    rogue_server: Issued  # a server certificate for 127.0.0.1 from a CA the connector does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d: Path = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ca", "bank CA")
    other = make_ca(d, "other-ca", "someone else's CA")
    return Pki(
        ca=ca,
        server=issue(ca, d, "server", "bank server", server_ip="127.0.0.1"),
        client=issue(ca, d, "client", "switchd client"),
        other_ca=other,
        rogue_server=issue(other, d, "rogue", "rogue server", server_ip="127.0.0.1"),
    )


def tls_connector(bank: FakeBank, pki: Pki, *, client: bool = True, ca: Path | None = None) -> HttpConnector:
    settings = HttpConnectorSettings(
        url=bank.base_url + "/mtls",
        ca=ca if ca is not None else pki.ca.cert_path,
        client_cert=pki.client.cert_path if client else None,
        client_key=pki.client.key_path if client else None,
    )
    return HttpConnector("bank-https", settings)


async def test_mutual_tls_presents_the_client_certificate(nursery, pki):
    bank = await start_bank(nursery, (pki.server, pki.ca))
    conn = tls_connector(bank, pki)
    receipt = await conn.deliver(delivery())
    assert receipt == pki.client.sha256  # the bank saw our certificate
    assert bank.requests[0].peer_cert_sha256 == pki.client.sha256
    await conn.aclose()


async def test_without_client_certificate_the_bank_refuses_for_good(nursery, pki):
    bank = await start_bank(nursery, (pki.server, pki.ca))
    conn = tls_connector(bank, pki, client=False)
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery())
    assert info.value.retryable is False
    assert "403" in info.value.reason
    await conn.aclose()


@pytest.mark.parametrize("case", ["untrusted-server", "system-trust"])
async def test_a_server_certificate_we_do_not_trust_fails_retryable(nursery, pki, case):
    if case == "untrusted-server":
        bank = await start_bank(nursery, (pki.rogue_server, pki.ca))
        conn = tls_connector(bank, pki)
    else:
        bank = await start_bank(nursery, (pki.server, pki.ca))
        conn = HttpConnector("bank-https", HttpConnectorSettings(url=bank.base_url + "/mtls"))  # no ca: system store
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery())
    assert info.value.retryable is True
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.reason
    assert bank.requests == []  # nothing was sent to a server we could not verify
    await conn.aclose()


def test_tls_files_are_read_when_the_connector_is_built(tmp_path, pki):
    missing = tmp_path / "nope.pem"
    with pytest.raises(OSError):
        HttpConnector("x", HttpConnectorSettings(url="https://127.0.0.1:1/", ca=missing))
    with pytest.raises(OSError):  # ssl.SSLError is an OSError: a key that is not the certificate's
        HttpConnector(
            "x",
            HttpConnectorSettings(
                url="https://127.0.0.1:1/", client_cert=pki.client.cert_path, client_key=pki.server.key_path
            ),
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://bank/in"}, "http"),
        ({"url": "not a url"}, "http"),
        ({"url": "http://bank/in", "ca": Path("ca.pem")}, "https"),
        ({"url": "https://bank/in", "client_key": Path("k.pem")}, "client_key without client_cert"),
        ({"url": "https://bank/in", "timeout_s": 0}, "timeouts"),
        ({"url": "https://bank/in", "headers": (("Idempotency-Key", "x"),)}, "set by the connector"),
    ],
)
def test_settings_refuse_nonsense(kwargs: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        HttpConnectorSettings(**kwargs)  # type: ignore[arg-type]
