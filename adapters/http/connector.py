"""Outbound HTTP connector: POSTs each message to a bank's URL (httpx on trio, one client and its kept-alive
connections per connector), optionally over TLS with the bank's CA and our client certificate.

What the bank gets: the payload as the body (`Content-Type: application/xml`), `Idempotency-Key: <outbox id>`
(the same on every attempt and replay, so the bank can recognise a repeat), `X-Switchd-Attempt`,
`X-Switchd-Possible-Duplicate: true|false` (the AppHdr PssblDplct of the payload says the same) and
`X-Switchd-Message-Type`, plus any configured headers.

How answers are read: 2xx delivered; 408, 429 and 5xx, connection failures (TLS included) and timeouts are
retryable (the bank may be back later; after a timeout it may also have the message, which the outbox marks as a
possible duplicate on the next attempt); any other status (3xx, 4xx) means the bank refused these bytes:
not retryable. Redirects are not followed, and proxy or certificate settings from the environment are ignored:
where a payment goes is decided by the config alone. Bodies (ours and theirs) and header values are never put
in errors or logs; the URL appears without credentials or query.
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import trio

from switchd.connectors import Delivery, DeliveryFailed

log = logging.getLogger("switchd.http.connector")

RETRYABLE_STATUSES = frozenset({408, 429})  # plus every 5xx
MAX_RECEIPT = 200  # characters of a receipt kept for the journal
# Headers the connector sets itself: configured headers may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "idempotency-key",
        "x-switchd-attempt",
        "x-switchd-possible-duplicate",
        "x-switchd-message-type",
    }
)


@dataclass(frozen=True)
class HttpConnectorSettings:
    """`url`: where to POST (http or https). `ca`: PEM bundle to verify the bank's certificate (None: the system's
    trust store). `client_cert` / `client_key`: our PEM certificate and key for mutual TLS (`client_key` None
    when the key is in the certificate file). `timeout_s`: the whole request, connection to last byte of the
    answer; `connect_timeout_s`: connecting and the TLS handshake. `max_connections`: open to this bank at once.
    `headers`: extra request headers (an API key, say; their values are never logged). `max_response_bytes`:
    what is read of an answer's body (for its receipt id)."""

    url: str
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: float = 20.0
    connect_timeout_s: float = 5.0
    max_connections: int = 8
    headers: tuple[tuple[str, str], ...] = ()
    max_response_bytes: int = 65536

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {redact_url(self.url)!r} is not an http:// or https:// URL with a host")
        if parts.scheme == "http" and (self.ca or self.client_cert or self.client_key):
            raise ValueError("ca, client_cert and client_key need an https:// url")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key without client_cert")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be greater than 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        for name, _ in self.headers:
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the connector itself")


def redact_url(url: str) -> str:
    """`url` without user info, query or fragment: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def tls_context(settings: HttpConnectorSettings) -> ssl.SSLContext | None:
    """The client TLS context for an https URL (None for http). Raises OSError / ssl.SSLError when a file cannot
    be read or does not hold what it should: at start-up, not at the first payment."""
    if urlsplit(settings.url).scheme != "https":
        return None
    ctx = ssl.create_default_context(cafile=str(settings.ca) if settings.ca else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert is not None:
        key = str(settings.client_key) if settings.client_key is not None else None
        ctx.load_cert_chain(str(settings.client_cert), key)
    return ctx


class HttpConnector:
    """POSTs deliveries to `settings.url` (see the module docstring). Building it reads the TLS files (raises
    OSError / ssl.SSLError); `aclose` closes its connections."""

    def __init__(self, name: str, settings: HttpConnectorSettings) -> None:
        self.name = name
        self.settings = settings
        self._where = redact_url(settings.url)
        ctx = tls_context(settings)
        self._client = httpx.AsyncClient(
            verify=ctx if ctx is not None else True,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
            ),
            follow_redirects=False,
            trust_env=False,
        )
        self._extra_headers = dict(settings.headers)

    async def deliver(self, delivery: Delivery) -> str | None:
        """POST the payload; returns the bank's receipt (the `id` of a JSON answer, else the status line).

        Raises DeliveryFailed: retryable for 408, 429, 5xx, connection and TLS failures and timeouts; not
        retryable for any other status.
        """
        headers = {
            **self._extra_headers,
            "Content-Type": "application/xml",
            "Idempotency-Key": delivery.outbox_id,
            "X-Switchd-Attempt": str(delivery.attempt),
            "X-Switchd-Possible-Duplicate": "true" if delivery.possible_duplicate else "false",
            "X-Switchd-Message-Type": delivery.message_type,
        }
        try:
            # httpx's timeouts bound each read and write; this bounds the whole exchange (a bank dripping bytes).
            with trio.fail_after(self.settings.timeout_s):
                async with self._client.stream(
                    "POST", self.settings.url, content=delivery.payload, headers=headers
                ) as r:
                    body = await self._read_some(r)
                    status, phrase = r.status_code, r.reason_phrase or _standard_phrase(r.status_code)
                    content_type = r.headers.get("content-type", "")
        except (trio.TooSlowError, httpx.TimeoutException):
            raise DeliveryFailed(
                f"{self._where}: no answer within {self.settings.timeout_s:g} s", retryable=True
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise DeliveryFailed(f"{self._where}: {exc}", retryable=False) from None
        except httpx.TransportError as exc:
            # the cause (refused, reset, certificate verify failed) is in the message or the chained error; never a body
            raise DeliveryFailed(f"{self._where}: {type(exc).__name__}: {_cause(exc)}", retryable=True) from None
        except httpx.HTTPError as exc:  # e.g. an answer body in a broken content encoding: outcome unknown
            raise DeliveryFailed(f"{self._where}: {type(exc).__name__}", retryable=True) from None
        if 200 <= status < 300:
            return _receipt(status, phrase, content_type, body)
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        raise DeliveryFailed(f"{self._where} answered {status} {phrase}".rstrip(), retryable=retryable)

    async def _read_some(self, response: httpx.Response) -> bytes:
        """Up to max_response_bytes of the body; the rest is not read (the connection is then not reused)."""
        limit = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(chunks)[:limit]

    async def aclose(self) -> None:
        await self._client.aclose()


def _standard_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _cause(exc: BaseException) -> str:
    """The first non-empty message along the exception's chain (httpx on trio often wraps the ssl or socket error
    in a ConnectError whose own message is empty)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        text = str(node)
        if text:
            return text
        node = node.__cause__ or node.__context__
    return "no detail"


def _receipt(status: int, phrase: str, content_type: str, body: bytes) -> str:
    """The bank's id for the message when its JSON answer has one (`id`), else the status line."""
    if content_type.split(";")[0].strip().lower() == "application/json" and body:
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        ident = value.get("id") if isinstance(value, dict) else None
        if isinstance(ident, str | int) and not isinstance(ident, bool) and str(ident):
            return str(ident)[:MAX_RECEIPT]
    return f"HTTP {status} {phrase}".rstrip()
