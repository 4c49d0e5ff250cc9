"""The trio supervisor: opens the journal, starts the listeners, tells systemd, drains on SIGTERM, reloads on SIGHUP.

Shutdown order: stop intake (POSTs answer 503, /readyz fails), let in-flight messages finish (bounded by
limits.drain_timeout_s), cancel the listeners, then close the journal, which flushes its last batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from adapters.http.api import Api, ApiState
from adapters.http.server import serve_http
from adapters.registry import build_connectors, close_all
from hsm.canonical import CanonicalEnvelope
from hsm.errors import HsmError
from hsm.service import SigningService
from switchd.config import Config, ConnectorConfig, load_config
from switchd.connectors import InboundSink
from switchd.correlate import Correlator
from switchd.delivery import ConnectorWorker, DeadlineWatch, Deliveries
from switchd.errors import ConfigError
from switchd.examine import Examiner
from switchd.journal import Journal, open_journal
from switchd.metrics import Metrics
from switchd.outgoing import EnvelopePreparer, Originals, OriginatorReports, Signer
from switchd.pipeline import Clock, Inbound, Pipeline
from switchd.schemas import load_schemas
from switchd.systemd import sd_notify
from switchd.timefmt import rfc3339, utc_now
from switchd.workers import InlineExaminer, ProcessExaminer, VerdictSource

log = logging.getLogger("switchd")
STATUS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Running:
    """What `nursery.start(daemon.run)` hands back once the daemon is ready."""

    http_addresses: list[Any]
    startup_seconds: float


class Daemon:
    def __init__(self, config: Config, *, clock: Clock = utc_now) -> None:
        self.config = config
        self.clock = clock
        self._stop = trio.Event()
        self._reload_requested = trio.Event()
        self.stopped = trio.Event()  # set once the journal is closed
        self.state = ApiState()  # readiness and draining, as every request sees them
        self.deliveries: Deliveries | None = None
        self.signing: SigningService | None = None
        self.intake: ProcessExaminer | None = None

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def run(self, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
        started = time.perf_counter()
        cfg = self.config
        catalogue, schemas = load_schemas(cfg.schema_dir)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        metrics = Metrics()
        state = self.state
        examiner = Examiner(catalogue, schemas, cfg.http.max_body_bytes)
        async with open_journal(cfg.journal_path) as journal, trio.open_nursery() as workers_nursery:
            verdicts: VerdictSource = InlineExaminer(examiner)
            if cfg.intake_workers > 0:
                # Ready before the workers are warm: until they are, this thread examines (switchd.workers).
                self.intake = ProcessExaminer(cfg.schema_dir, cfg.http.max_body_bytes, cfg.intake_workers, verdicts)
                verdicts = self.intake
            # Neither the intake workers nor the signer processes hold up readiness (each takes ~0.5 s or more to
            # spawn and compile or log in): until they are warm, this thread examines, and signing waits for them.
            async with trio.open_nursery() as starting:
                if self.intake is not None:
                    starting.start_soon(workers_nursery.start, self.intake.run)
                starting.start_soon(self._start_signing, workers_nursery)
            signing = self.signing
            recovered = await journal.recover_inflight(rfc3339(self.clock()))
            if recovered:
                log.warning(
                    "%d delivery attempt(s) were in flight when the last run ended: they will be sent again, "
                    "marked as possible duplicates",
                    len(recovered),
                )
            originals = Originals(journal, catalogue, cfg.http.max_body_bytes)
            reports = OriginatorReports(originals, cfg.switch_bic)
            correlator = Correlator(cfg, journal, reports, metrics, self.clock)
            pipeline = Pipeline(
                examiner=examiner,
                verdicts=verdicts,
                journal=journal,
                metrics=metrics,
                clock=self.clock,
                routes=lambda: self.config.routes,
                on_report=correlator.on_report,
                returns=correlator,
                switch_bic=cfg.switch_bic,
            )
            built = build_connectors(cfg, lambda c: self._sink(pipeline, c), catalogue, schemas)
            preparer = EnvelopePreparer(cfg, journal, originals, signer=_signer(signing), clock=self.clock)
            self.deliveries = Deliveries(
                {
                    c.name: ConnectorWorker(
                        c, built.connectors[c.name], journal, preparer, reports, metrics, self.clock
                    )
                    for c in cfg.connectors
                },
                DeadlineWatch(journal, reports, self.clock),
            )
            # Set here, not at construction: the connectors (the bank's answers) need the pipeline first.
            pipeline.on_routed = self.deliveries.routed
            api = Api(
                config=lambda: self.config,
                pipeline=pipeline,
                journal=journal,
                metrics=metrics,
                state=state,
                clock=self.clock,
            )
            delivery_nursery = await workers_nursery.start(_nursery_task)
            for task in built.tasks:
                await delivery_nursery.start(task)
            await delivery_nursery.start(self.deliveries.run)
            async with trio.open_nursery() as nursery:
                addrs = await nursery.start(partial(serve_http, cfg.http, api.handle, precheck=api.precheck))
                state.ready = True
                metrics.ready.set(1)
                elapsed = time.perf_counter() - started
                log.info(
                    "ready in %.2fs: http on %s, journal %s, %d message types, %d participants, %d intake workers",
                    elapsed,
                    ", ".join(f"{a[0]}:{a[1]}" for a in addrs),
                    cfg.journal_path,
                    len(catalogue),
                    len(cfg.participants),
                    cfg.intake_workers,
                )
                write_runtime_file(cfg, addrs)
                sd_notify("READY=1\nSTATUS=accepting messages")
                task_status.started(Running(addrs, elapsed))
                nursery.start_soon(self._reload_loop)
                nursery.start_soon(self._status_loop, journal, metrics, addrs)
                await self._stop.wait()

                log.info("stopping: intake closed, waiting for %d in-flight message(s)", state.inflight)
                sd_notify("STOPPING=1\nSTATUS=draining")
                state.draining = True
                metrics.ready.set(0)
                with trio.move_on_after(cfg.drain_timeout_s) as drain:
                    while state.inflight:
                        await state.idle.wait()
                if drain.cancelled_caught:
                    log.warning("drain timed out with %d message(s) in flight; none was answered 202", state.inflight)
                nursery.cancel_scope.cancel()
            # Deliveries stop last: an attempt cut short here stays `sending` in the journal and is re-sent,
            # marked as a possible duplicate, at the next start.
            delivery_nursery.cancel_scope.cancel()
            await close_all(built)
            workers_nursery.cancel_scope.cancel()
        runtime_file(cfg).unlink(missing_ok=True)
        self.stopped.set()
        log.info("stopped; journal closed")

    async def _start_signing(self, nursery: trio.Nursery) -> SigningService | None:
        """Start the signer processes when `[hsm]` is configured. A token that cannot be used now (unreachable,
        wrong PIN) does not stop the daemon: it says so, /readyz fails, and outbound messages wait in the journal
        (never sent unsigned) until a retry logs in."""
        if self.config.hsm is None:
            log.warning("no [hsm] configured: outbound messages are sent unsigned")
            return None
        service = SigningService(self.config.hsm)
        await nursery.start(partial(service.run, require_ready=False))
        if service.ready:
            log.info(
                "signing with key %r on token %r (%d signer processes)",
                self.config.hsm.active,
                self.config.hsm.token,
                service.workers,
            )
        else:
            log.error(
                "HSM unusable, outbound messages wait until it is: %s (token %r, module %s)",
                service.last_error,
                self.config.hsm.token,
                self.config.hsm.module,
            )
        self.state.problems["hsm"] = lambda: None if service.ready else f"HSM unavailable: {service.last_error}"
        self.signing = service
        return service

    def _sink(self, pipeline: Pipeline, c: ConnectorConfig) -> InboundSink:
        """How a connector's bank answers enter switchd: the pipeline, as the connector's participant."""
        participant = self.config.participant(c.participant) if c.participant else None

        async def sink(raw: bytes) -> int:
            if participant is None:
                log.warning("%s: an answer came back but the connector has no participant to take it as", c.name)
                return 403
            out = await pipeline.accept(Inbound(raw, "local", participant, self.clock(), channel_ref=c.name))
            if out.http_status >= 300:
                log.warning("%s: the answer %s was refused: %s", c.name, out.id, [f.as_json() for f in out.findings])
            return out.http_status

        return sink

    async def _status_loop(self, journal: Journal, metrics: Metrics, addrs: list[Any]) -> None:
        """Keep the runtime file (switchctl status) and the outbox gauges current."""
        while True:
            depth = await trio.to_thread.run_sync(journal.outbox_depth)
            for connector, states in depth.items():
                for st, n in states.items():
                    metrics.outbox_depth.labels(connector, st).set(n)
            metrics.intake_workers_warm.set(int(self.intake is not None and self.intake.warm.is_set()))
            live = self.deliveries.snapshot() if self.deliveries else []
            write_runtime_file(self.config, addrs, live, depth, self._signing_snapshot(), self._intake_snapshot())
            await trio.sleep(STATUS_INTERVAL_S)

    def _intake_snapshot(self) -> dict[str, object]:
        """Where messages are examined: `warm` False while the worker processes start (the daemon examines)."""
        if self.intake is None:
            return {"workers": 0, "warm": False}
        return {"workers": self.intake.workers, "warm": self.intake.warm.is_set()}

    def _signing_snapshot(self) -> dict[str, object] | None:
        if self.signing is None:
            return None
        stats = self.signing.statistics()
        return {
            "token": self.signing.settings.token,
            "active": self.signing.settings.active,
            "ready": stats.ready,
            "workers": stats.workers,
            "signed": stats.items,
            "last_error": stats.last_error,
        }

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested = trio.Event()
            try:
                new = load_config(self.config.source)
            except ConfigError as exc:
                log.error("reload refused, keeping the running config: %s", exc)
                continue
            if (
                new.http != self.config.http
                or new.journal_path != self.config.journal_path
                or new.connectors != self.config.connectors
            ):
                log.warning("reload: listener, journal and connector changes need a restart; applying the rest")
            if new.hsm != self.config.hsm:
                if (
                    self.signing is None
                    or new.hsm is None
                    or self.config.hsm is None
                    or new.hsm.connection != self.config.hsm.connection
                ):
                    # Kept as running, so the next reload sees (and warns about) the same difference again and a
                    # later key rotation cannot slip the token or PIN change in with it.
                    log.warning(
                        "reload: turning signing on or off, or another token, module or PIN source, needs a restart; "
                        "signing stays as it was"
                    )
                    new = dataclasses.replace(new, hsm=self.config.hsm)
                else:
                    # Key rotation: the next batches sign with the new active key; the journal records each label.
                    # Checked on the token first: a key that is not there would leave every delivery waiting.
                    hsm = new.hsm
                    try:
                        await self.signing.check(hsm)
                    except HsmError as exc:
                        log.error("reload of [hsm] refused, signing stays as it was: %s", exc)
                        new = dataclasses.replace(new, hsm=self.config.hsm)
                    else:
                        self.signing.reload(hsm)
                        log.info("reload: signing key is now %r", hsm.active)
            self.config = new
            log.info(
                "reloaded %s: %d participants, %d routes", new.source, len(new.participants), len(new.routes.routes)
            )


def runtime_file(cfg: Config) -> Path:
    """Where a running daemon says its pid and the addresses it really bound (port 0 picks one)."""
    return cfg.data_dir / "switchd.runtime.json"


def write_runtime_file(
    cfg: Config,
    addrs: list[Any],
    connectors: list[dict[str, object]] | None = None,
    outbox: dict[str, dict[str, int]] | None = None,
    signing: dict[str, object] | None = None,
    intake: dict[str, object] | None = None,
) -> None:
    path = runtime_file(cfg)
    tmp = path.with_suffix(".tmp")
    doc = {
        "pid": os.getpid(),
        "http": [f"{a[0]}:{a[1]}" for a in addrs],
        "connectors": connectors or [],
        "outbox": outbox or {},
        "signing": signing,
        "intake": intake,
    }
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)  # atomic: switchctl never reads half a file


def _signer(service: SigningService | None) -> Signer | None:
    """The preparer's signer: the service's active key; HsmUnavailable leaves the row waiting (delivery.py)."""
    if service is None:
        return None

    async def sign(envelope: bytes | CanonicalEnvelope) -> tuple[bytes, str]:
        (signed,) = await service.sign([envelope])
        return signed.data, signed.key_label

    return sign


async def _nursery_task(*, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
    """A nursery that lives in another one and can be cancelled on its own (the delivery side)."""
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


async def run_until_signalled(daemon: Daemon) -> None:
    """Run `daemon`, turning SIGTERM/SIGINT into a drain and SIGHUP into a reload."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def dispatch() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        daemon.request_reload()
                    else:
                        daemon.request_stop()

            nursery.start_soon(dispatch)
            await daemon.run()
            nursery.cancel_scope.cancel()
