"""The participant HTTP API: routes, authentication, JSON answers. No sockets here (see server.py).

POST /v1/messages, GET /v1/messages/{id}, GET /v1/messages/{id}/report, GET /v1/reports?after=CURSOR,
GET /healthz, /readyz, /metrics. Participants see only their own messages; someone else's id is a 404, so
that ids cannot be probed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from switchd.config import Config, Participant
from switchd.journal import Journal
from switchd.metrics import Metrics
from switchd.pipeline import Inbound, Pipeline

XML_TYPES = ("application/xml", "text/xml")


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""
    peer_cert_sha256: str | None = None
    peer: str | None = None
    participant: Participant | None = None  # authenticated from the head already (Api.precheck)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode() + b"\n", headers=headers)

    @classmethod
    def error(cls, status: int, code: str, detail: str, **extra: Any) -> Response:
        hdrs: tuple[tuple[str, str], ...] = ()
        if status == 401:
            hdrs = (("WWW-Authenticate", 'Bearer realm="switchd"'),)
        if status == 503:
            hdrs = (("Retry-After", "5"),)
        return cls.json(status, {"error": code, "detail": detail, **extra}, hdrs)


@dataclass
class ApiState:
    """What the daemon flips: readiness and draining (SIGTERM) are seen by every request. `problems` are checks
    of what the daemon depends on (the HSM, say): each returns None when fine, else why /readyz fails. Intake stays
    open meanwhile: an accepted message waits in the journal until what it needs is back."""

    ready: bool = False
    draining: bool = False
    inflight: int = 0
    idle: trio.Event = field(default_factory=trio.Event)
    problems: dict[str, Callable[[], str | None]] = field(default_factory=dict)

    def current_problems(self) -> dict[str, str]:
        out = {}
        for name, check in self.problems.items():
            why = check()
            if why is not None:
                out[name] = why
        return out


class Api:
    def __init__(
        self,
        *,
        config: Callable[[], Config],
        pipeline: Pipeline,
        journal: Journal,
        metrics: Metrics,
        state: ApiState,
        clock: Callable[[], datetime],
    ) -> None:
        # config is a getter so that a SIGHUP reload (new participants) takes effect on the next request
        self._config = config
        self.pipeline = pipeline
        self.journal = journal
        self.metrics = metrics
        self.state = state
        self.clock = clock

    async def handle(self, req: Request) -> Response:
        return self._counted(req, await self._route(req))

    def _counted(self, req: Request, resp: Response) -> Response:
        self.metrics.http_requests.labels(req.method, str(resp.status)).inc()
        return resp

    async def _route(self, req: Request) -> Response:
        url = urlsplit(req.target)
        path = unquote(url.path)
        parts = _parts(path)
        if path == "/healthz":
            return Response.json(200, {"status": "ok"}) if req.method in ("GET", "HEAD") else _not_allowed("GET")
        if path == "/readyz":
            problems = self.state.current_problems()
            ok = self.state.ready and not self.state.draining and not problems
            body: dict[str, object] = {"ready": ok, "draining": self.state.draining}
            if problems:
                body["problems"] = problems
            return Response.json(200 if ok else 503, body)
        if path == "/metrics":
            return Response(200, self.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")
        if parts[:2] not in _PARTICIPANT_RESOURCES:
            return Response.error(404, "not_found", f"no such resource: {path}")
        participant = req.participant or self._authenticate(req)
        if participant is None:
            return _unauthenticated()
        if parts == ["v1", "messages"]:
            if req.method != "POST":
                return _not_allowed("POST")
            return await self._post_message(req, participant)
        if req.method not in ("GET", "HEAD"):
            return _not_allowed("GET")
        if len(parts) == 3 and parts[1] == "messages":
            return await self._get_message(parts[2], participant)
        if len(parts) == 4 and parts[1] == "messages" and parts[3] == "report":
            return await self._get_report(parts[2], participant)
        if parts == ["v1", "reports"]:
            return await self._list_reports(parse_qs(url.query), participant)
        return Response.error(404, "not_found", f"no such resource: {path}")

    def precheck(self, req: Request) -> Response | Request:
        """From the request's head, before its body is read (server.Precheck): 401 for an unauthenticated upload
        to /v1/, so it is refused without being invited to send the body; else the request with its participant."""
        if _parts(unquote(urlsplit(req.target).path))[:2] not in _PARTICIPANT_RESOURCES:
            return req  # not one that authenticates (a 404, say): the handler answers it
        participant = self._authenticate(req)
        if participant is None:
            return self._counted(req, _unauthenticated())
        return dataclasses.replace(req, participant=participant)

    def _authenticate(self, req: Request) -> Participant | None:
        cfg = self._config()
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return cfg.participant_by_token(token.strip())
        if req.peer_cert_sha256:
            return cfg.participant_by_cert(req.peer_cert_sha256)
        return None

    async def _post_message(self, req: Request, participant: Participant) -> Response:
        if self.state.draining or not self.state.ready:
            return Response.error(503, "draining", "switchd is shutting down; retry on another node or later")
        ctype = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype not in XML_TYPES:
            return Response.error(415, "unsupported_media_type", "send ISO 20022 XML as application/xml")
        self.state.inflight += 1
        self.metrics.inflight.inc()
        try:
            outcome = await self.pipeline.accept(
                Inbound(
                    raw=req.body,
                    channel="http",
                    participant=participant,
                    received_at=self.clock(),
                    channel_ref=req.peer,
                )
            )
        finally:
            self.state.inflight -= 1
            self.metrics.inflight.dec()
            if self.state.inflight == 0:
                self.state.idle.set()
                self.state.idle = trio.Event()
        headers = (("Location", f"/v1/messages/{outcome.id}"),)
        return Response.json(outcome.http_status, outcome.as_json(), headers)

    async def _own_message(self, mid: str, participant: Participant) -> Any:
        row = await trio.to_thread.run_sync(self.journal.get, mid)
        if row is None or row.participant != participant.name:
            return None
        return row

    async def _get_message(self, mid: str, participant: Participant) -> Response:
        row = await self._own_message(mid, participant)
        if row is None:
            return Response.error(404, "not_found", f"no message {mid} for {participant.name}")
        events = await trio.to_thread.run_sync(self.journal.events, mid)
        return Response.json(
            200,
            {
                "id": row.id,
                "state": row.state,
                "message_type": row.message_type,
                "msg_id": row.msg_id,
                "received_at": row.received_at,
                "http_status": row.http_status,
                "verdict": row.verdict,
                "events": [{"seq": e.seq, "at": e.at, "kind": e.kind, "detail": e.detail} for e in events],
            },
        )

    async def _get_report(self, mid: str, participant: Participant) -> Response:
        row = await self._own_message(mid, participant)
        if row is None:
            return Response.error(404, "not_found", f"no message {mid} for {participant.name}")
        report = await trio.to_thread.run_sync(self.journal.latest_report, mid)
        if report is None:
            return Response.error(404, "no_report", f"message {mid} has no status report yet")
        return Response(200, report.xml, content_type="application/xml")

    async def _list_reports(self, query: dict[str, list[str]], participant: Participant) -> Response:
        try:
            after = int(query.get("after", ["0"])[0])
            limit = min(max(int(query.get("limit", ["100"])[0]), 1), 1000)
        except ValueError:
            return Response.error(400, "bad_query", "after and limit are integers")
        if not 0 <= after < 2**63:  # a cursor is a SQLite rowid: anything else is not one of ours
            return Response.error(400, "bad_query", "after is a cursor from an earlier page (0 <= after < 2**63)")
        rows, cursor = await trio.to_thread.run_sync(self.journal.reports, participant.name, after, limit)
        return Response.json(
            200,
            {
                "reports": [
                    {
                        "cursor": r.seq,
                        "message_id": r.message_id,
                        "report_id": r.report_id,
                        "message_type": r.message_type,
                        "status": r.status,
                        "created_at": r.created_at,
                        "xml": r.xml.decode(),
                    }
                    for r in rows
                ],
                "next": cursor,
            },
        )


# The resources only a participant may use: /v1/messages... and /v1/reports...
_PARTICIPANT_RESOURCES = (["v1", "messages"], ["v1", "reports"])


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _not_allowed(allow: str) -> Response:
    return Response.error(405, "method_not_allowed", f"use {allow}", allow=allow)


def _unauthenticated() -> Response:
    return Response.error(401, "unauthenticated", "send 'Authorization: Bearer <token>' or a client cert")
