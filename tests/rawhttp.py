"""A minimal keep-alive HTTP/1.1 client over h11 for load and crash tests (httpx leaks generators on dead peers)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import h11
import trio


class RawClient:
    """One connection; `post` sends a request and reads the whole answer. Raises trio errors if the peer dies."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.token = token
        self._stream: trio.SocketStream | None = None
        self._conn = h11.Connection(h11.CLIENT)

    async def __aenter__(self) -> RawClient:
        self._stream = await trio.open_tcp_stream(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.aclose()

    async def post(self, target: str, body: bytes, content_type: str = "application/xml") -> tuple[int, bytes]:
        assert self._stream is not None
        conn = self._conn
        headers = [
            ("Host", self.host),
            ("Content-Type", content_type),
            ("Authorization", f"Bearer {self.token}"),
            ("Content-Length", str(len(body))),
        ]
        data = conn.send(h11.Request(method="POST", target=target, headers=headers))
        data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        await self._stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                received = await self._stream.receive_some(65536)
                if not received:
                    raise trio.BrokenResourceError("server closed the connection")
                conn.receive_data(received)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        conn.start_next_cycle()
        return status, b"".join(chunks)

    async def post_json(self, target: str, body: bytes) -> tuple[int, Any]:
        status, payload = await self.post(target, body)
        return status, json.loads(payload) if payload else None
