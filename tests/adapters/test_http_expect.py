"""`Expect: 100-continue` over a real socket: the 100 comes before the body is sent, never before a 413.

curl (bodies over 1 MiB) and .NET (by default) send the headers, then hold the body back until the server says
100 Continue or their own timer runs out. The client here holds the body back for good: without the 100 the server
would time the request out (408) instead of answering it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import h11
import pytest
import trio

from tests.builders import pacs008
from tests.conftest import TOKENS, RunningDaemon

# Far above the test config's request timeout (10 s): a server that never sends the 100 answers 408 first, so the
# test fails on the status, not on this guard.
HANG_GUARD_S = 60


class _Client:
    """One HTTP/1.1 connection driven step by step with h11 (httpx always sends the body at once)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, *events: Any) -> None:
        await self.stream.send_all(b"".join(self.conn.send(e) or b"" for e in events))

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            return event

    async def rest_of_response(self) -> bytes:
        chunks = []
        while not isinstance(event := await self.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            chunks.append(bytes(event.data))
        return b"".join(chunks)


def _headers(daemon: RunningDaemon, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        ("Host", daemon.base_url.removeprefix("http://")),
        ("Authorization", f"Bearer {TOKENS['bank-a']}"),
        ("Content-Type", "application/xml"),
        ("Expect", "100-continue"),
        *extra,
    ]


async def _open(daemon: RunningDaemon) -> _Client:
    host, port = daemon.base_url.removeprefix("http://").rsplit(":", 1)
    return _Client(await trio.open_tcp_stream(host, int(port)))


async def test_100_continue_comes_before_the_body_then_the_answer(daemon: RunningDaemon) -> None:
    client = await _open(daemon)
    async with client.stream:
        with trio.fail_after(HANG_GUARD_S):
            # Twice on one connection: the second request's 100 must not be lost to the first one's state.
            for n in (1, 2):
                body = pacs008(msg_id=f"EXPECT-{n}")
                await client.send(
                    h11.Request(
                        method="POST",
                        target="/v1/messages",
                        headers=_headers(daemon, ("Content-Length", str(len(body)))),
                    )
                )
                first = await client.next_event()  # nothing of the body has been sent yet
                assert isinstance(first, h11.InformationalResponse), first
                assert first.status_code == 100
                await client.send(h11.Data(data=body), h11.EndOfMessage())
                final = await client.next_event()
                assert isinstance(final, h11.Response), final
                answer = json.loads(await client.rest_of_response())
                assert final.status_code == 202, answer
                assert answer["state"] == "accepted" and answer["msg_id"] == f"EXPECT-{n}"
                client.conn.start_next_cycle()


async def test_chunked_body_is_invited_too(daemon: RunningDaemon) -> None:
    client = await _open(daemon)
    async with client.stream:
        with trio.fail_after(HANG_GUARD_S):
            body = pacs008(msg_id="EXPECT-CHUNKED")
            await client.send(
                h11.Request(
                    method="POST", target="/v1/messages", headers=_headers(daemon, ("Transfer-Encoding", "chunked"))
                )
            )
            first = await client.next_event()
            assert isinstance(first, h11.InformationalResponse) and first.status_code == 100, first
            half = len(body) // 2
            await client.send(h11.Data(data=body[:half]), h11.Data(data=body[half:]), h11.EndOfMessage())
            final = await client.next_event()
            assert isinstance(final, h11.Response), final
            answer = json.loads(await client.rest_of_response())
            assert final.status_code == 202, answer


async def test_too_large_body_gets_413_without_a_100(daemon: RunningDaemon) -> None:
    limit = daemon.daemon.config.http.max_body_bytes
    client = await _open(daemon)
    async with client.stream:
        with trio.fail_after(HANG_GUARD_S):
            await client.send(
                h11.Request(
                    method="POST", target="/v1/messages", headers=_headers(daemon, ("Content-Length", str(limit + 1)))
                )
            )
            first = await client.next_event()
            # A 100 first would invite the client to upload what is refused anyway.
            assert isinstance(first, h11.Response), first
            assert first.status_code == 413
            assert json.loads(await client.rest_of_response())["error"] == "too_large"
            # The server closes: the body it did not read cannot be skipped on this connection.
            assert await client.stream.receive_some(1) == b""


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token"])
async def test_unauthenticated_upload_gets_401_without_a_100(daemon: RunningDaemon, authorization: str | None) -> None:
    body = pacs008(msg_id="EXPECT-NOBODY")
    headers = [(k, v) for k, v in _headers(daemon, ("Content-Length", str(len(body)))) if k != "Authorization"]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    client = await _open(daemon)
    async with client.stream:
        with trio.fail_after(HANG_GUARD_S):
            await client.send(h11.Request(method="POST", target="/v1/messages", headers=headers))
            first = await client.next_event()
            # Refused from its headers: never invited to upload a body that would be refused anyway.
            assert isinstance(first, h11.Response), first
            assert first.status_code == 401
            assert json.loads(await client.rest_of_response())["error"] == "unauthenticated"
            assert await client.stream.receive_some(1) == b""  # the body was not read: the connection ends
    async with daemon.client(None) as http:
        metrics = (await http.get("/metrics")).text  # counted like any other 401
    assert 'switchd_http_requests_total{method="POST",status="401"} 1.0' in metrics


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_waiting_for_100_continue_gets_its_answer(daemon: RunningDaemon, tmp_path: Any) -> None:
    """curl as users run it, told to wait for the 100 as long as it takes: without it the server's 408 comes."""
    body = tmp_path / "pacs008.xml"
    body.write_bytes(pacs008(msg_id="EXPECT-CURL"))
    argv = [
        "curl", "-sS", "-v", "--expect100-timeout", str(HANG_GUARD_S), "-H", "Expect: 100-continue",
        "-H", f"Authorization: Bearer {TOKENS['bank-a']}", "-H", "Content-Type: application/xml",
        "--data-binary", f"@{body}", "-w", "\n%{http_code}", f"{daemon.base_url}/v1/messages",
    ]  # fmt: skip
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=2 * HANG_GUARD_S)
    )
    assert result.returncode == 0, result.stderr
    assert "< HTTP/1.1 100" in result.stderr  # curl -v shows the interim answer it waited for
    answer, status = result.stdout.rsplit("\n", 1)
    assert status == "202", answer
    assert json.loads(answer)["msg_id"] == "EXPECT-CURL"
