"""A server that stops while a request's body is still uploading answers it 503 instead of resetting it."""

from __future__ import annotations

import h11
import trio

from adapters.http.api import Request, Response
from adapters.http.server import serve_http
from switchd.config import HttpConfig

CFG = HttpConfig("127.0.0.1", 0, 1_000_000, None, None, None, request_timeout_s=30.0, max_connections=8)


async def test_an_upload_cut_short_by_shutdown_gets_503_and_the_handler_never_runs() -> None:
    head_seen = trio.Event()
    handled: list[Request] = []

    def precheck(request: Request) -> Request:
        head_seen.set()  # the server has the head and is about to read the body
        return request

    async def handler(request: Request) -> Response:
        handled.append(request)
        return Response.json(202, {})

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = trio.CancelScope()

            async def serve(task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
                with server:
                    await serve_http(CFG, handler, precheck=precheck, task_status=task_status)

            (addr, *_) = await nursery.start(serve)
            stream = await trio.open_tcp_stream(addr[0], addr[1])
            client = h11.Connection(h11.CLIENT)
            head = h11.Request(
                method="POST",
                target="/v1/messages",
                headers=[("Host", "switchd"), ("Content-Type", "application/xml"), ("Content-Length", "1000")],
            )
            await stream.send_all(client.send(head) + client.send(h11.Data(data=b"<Document")))
            await head_seen.wait()
            server.cancel()  # what the daemon does once drained: the rest of the body never comes

            events = []
            while not isinstance(event := client.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                else:
                    events.append(event)
            await stream.aclose()
    response = events[0]
    assert isinstance(response, h11.Response) and response.status_code == 503
    assert (b"connection", b"close") in list(response.headers)
    assert b'"draining"' in b"".join(bytes(e.data) for e in events[1:])
    assert not handled
