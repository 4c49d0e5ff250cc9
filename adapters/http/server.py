"""The trio + h11 shell of the HTTP API: listeners, keep-alive connections, body limits, optional TLS.

h11 parses HTTP/1.1 (no hand-written parsing); this module only moves bytes and enforces limits: a declared
Content-Length over the limit is refused with 413 before the body is read (a client waiting with `Expect:
100-continue` gets its 100 only once that check has passed), a chunked body is cut off at the limit, and a
connection that stalls past the request timeout is closed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio

from adapters.http.api import Request, Response
from switchd.config import HttpConfig

log = logging.getLogger("switchd.http")
READ_SIZE = 65536
SHUTDOWN_ANSWER_S = 1.0  # how long a stopping server tries to send an unfinished upload its 503
MAX_HEADER_BYTES = 32 * 1024
Handler = Callable[[Request], Awaitable[Response]]
# Looks at a request's head before its body is read (the body is b""): a Response refuses it there and then, so a
# client that cannot be let in is never invited to upload (no 100 Continue) and no body is read for it; else the
# request goes on as returned (the API notes who it authenticated, so the handler does not do it again).
Precheck = Callable[[Request], Response | Request]


class _BodyTooLarge(Exception):
    pass


def tls_context(cfg: HttpConfig) -> ssl.SSLContext | None:
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    if cfg.client_ca is not None:
        # OPTIONAL: a participant may also authenticate with a bearer token over server-only TLS
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(str(cfg.client_ca))
    return ctx


async def serve_http(
    cfg: HttpConfig,
    handler: Handler,
    *,
    precheck: Precheck | None = None,
    task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on cfg.host:cfg.port (0 = any free port) and serve until cancelled.

    Reports the bound addresses through `task_status` (nursery.start) so callers learn the port before READY.
    """
    listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
    ctx = tls_context(cfg)
    limiter = trio.Semaphore(cfg.max_connections)  # released by the connection task, not the acceptor
    addrs = [ln.socket.getsockname() for ln in listeners]
    async with trio.open_nursery() as nursery:
        for ln in listeners:
            nursery.start_soon(_accept_loop, ln, ctx, cfg, handler, precheck, limiter)
        task_status.started(addrs)


async def _accept_loop(
    listener: trio.SocketListener,
    ctx: ssl.SSLContext | None,
    cfg: HttpConfig,
    handler: Handler,
    precheck: Precheck | None,
    limiter: trio.Semaphore,
) -> None:
    async with listener, trio.open_nursery() as nursery:
        while True:
            await limiter.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:
                # EMFILE and friends: log, back off, keep serving (trio's serve_listeners does the same)
                limiter.release()
                log.error("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_connection, stream, ctx, cfg, handler, precheck, limiter)


async def _connection(
    tcp: trio.SocketStream,
    ctx: ssl.SSLContext | None,
    cfg: HttpConfig,
    handler: Handler,
    precheck: Precheck | None,
    limiter: trio.Semaphore,
) -> None:
    peer = "-"
    try:
        async with tcp:  # closes the socket on every path, a failed or timed-out TLS handshake included
            peer = "{}:{}".format(*tcp.socket.getpeername()[:2])
            stream: trio.abc.Stream = tcp
            cert_fp = None
            if ctx is not None:
                # https_compatible: a client closing without close_notify ends the connection, not an error
                tls = trio.SSLStream(tcp, ctx, server_side=True, https_compatible=True)
                with trio.move_on_after(cfg.request_timeout_s) as cs:
                    await tls.do_handshake()
                if cs.cancelled_caught:
                    return
                der = tls.getpeercert(binary_form=True)
                cert_fp = hashlib.sha256(der).hexdigest() if der else None
                stream = tls
            async with stream:
                await _serve_connection(stream, cfg, handler, precheck, peer, cert_fp)
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
        # One client's broken connection is its own business; never touch the (dead) socket here.
        log.debug("connection from %s ended: %s", peer, exc)
    finally:
        limiter.release()


async def _serve_connection(
    stream: trio.abc.Stream,
    cfg: HttpConfig,
    handler: Handler,
    precheck: Precheck | None,
    peer: str,
    cert_fp: str | None,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    async with _answering_503_when_stopped_mid_upload(conn, stream):
        while True:
            with trio.move_on_after(cfg.request_timeout_s) as cs:
                try:
                    event = await _next_event(conn, stream)
                except h11.RemoteProtocolError as exc:
                    await _send_simple(conn, stream, Response.error(exc.error_status_hint, "bad_request", str(exc)))
                    return
            if cs.cancelled_caught:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and conn.their_state is not h11.IDLE:
                    await _send_simple(conn, stream, Response.error(408, "timeout", "request took too long"))
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            assert isinstance(event, h11.Request)
            headers: dict[str, str] = {}
            for name, value in event.headers:
                key = name.decode("latin-1").lower()
                val = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {val}" if key in headers else val
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cfg.max_body_bytes:
                await _send_simple(conn, stream, _too_large(cfg))
                return  # we did not read the body, so this connection cannot be reused
            head = Request(
                method=event.method.decode("ascii", "replace"),
                target=event.target.decode("ascii", "replace"),
                headers=headers,
                body=b"",
                peer_cert_sha256=cert_fp,
                peer=peer,
            )
            has_body = (declared is not None and declared != "0") or "transfer-encoding" in headers
            checked = precheck(head) if precheck is not None and has_body else head
            if isinstance(checked, Response):
                await _send_simple(conn, stream, checked)
                return  # the body (if any) was not read, so this connection cannot be reused
            try:
                with trio.fail_after(cfg.request_timeout_s):
                    if conn.they_are_waiting_for_100_continue:
                        # The client (curl over 1 MiB, .NET by default) holds the body back until told to go on, and
                        # would otherwise wait about a second for nothing. Only after the size check: a body refused
                        # with 413 above must never be invited.
                        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                    body = await _read_body(conn, stream, cfg.max_body_bytes)
            except _BodyTooLarge:
                await _send_simple(conn, stream, _too_large(cfg))
                return
            except trio.TooSlowError:
                await _send_simple(conn, stream, Response.error(408, "timeout", "request body took too long"))
                return
            except h11.RemoteProtocolError as exc:
                await _send_simple(conn, stream, Response.error(exc.error_status_hint, "bad_request", str(exc)))
                return
            request = dataclasses.replace(checked, body=body)
            try:
                response = await handler(request)
            except Exception:
                # A bug in one request must not take the connection's other work or the daemon down with it.
                log.exception("handler failed for %s %s", request.method, request.target)
                response = Response.error(500, "internal_error", "switchd failed to handle this request")
            await _send_response(conn, stream, response, head_only=request.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.ProtocolError:
                return


@asynccontextmanager
async def _answering_503_when_stopped_mid_upload(conn: h11.Connection, stream: trio.abc.Stream) -> AsyncIterator[None]:
    """The server is stopping (the daemon drained what its handlers had, then cancels the rest). A request whose
    body was still uploading gets a 503 rather than a reset: its client learns that nothing was taken. One in a
    handler past the drain timeout (its body read: DONE) gets none: it may have been journaled, and the client's
    retry is answered from the journal as an idempotent resubmission."""
    try:
        yield
    except trio.Cancelled:
        if conn.their_state is h11.SEND_BODY and conn.our_state is h11.SEND_RESPONSE:
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_ANSWER_S):
                await _send_simple(conn, stream, Response.error(503, "draining", "switchd is shutting down"))
        raise


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(READ_SIZE)))
            continue
        return event


async def _read_body(conn: h11.Connection, stream: trio.abc.Stream, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError("client closed before the body was complete")


def _too_large(cfg: HttpConfig) -> Response:
    return Response.error(413, "too_large", f"body exceeds {cfg.max_body_bytes} bytes")


async def _send_response(conn: h11.Connection, stream: trio.abc.Stream, resp: Response, head_only: bool) -> None:
    headers = [
        ("Content-Type", resp.content_type),
        ("Content-Length", str(len(resp.body))),
        ("Server", "switchd"),
        *resp.headers,
    ]
    data = conn.send(h11.Response(status_code=resp.status, headers=headers))
    if not head_only and resp.body:
        data += conn.send(h11.Data(data=resp.body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def _send_simple(conn: h11.Connection, stream: trio.abc.Stream, resp: Response) -> None:
    """Answer an error that ends the connection (the request could not be read whole)."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    resp = Response(resp.status, resp.body, resp.content_type, (*resp.headers, ("Connection", "close")))
    # the connection ends after this answer either way; a peer already gone is not an error worth logging
    with contextlib.suppress(h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        await _send_response(conn, stream, resp, head_only=False)
