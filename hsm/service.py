"""The signing service the daemon calls: signer worker processes fed in batches, async sign/verify, readiness.

Theory of operation. SoftHSM (as python-pkcs11 initialises it) has no locks, so one process holds one logged-in
session and signs on one thread; to use every core, `workers` processes are spawned (trio-parallel, never forked:
a forked child would inherit the parent's module state). Each worker logs in once, under the login file lock, and
keeps its `Signer` between jobs. A job carries up to `batch_max` messages: the dispatcher takes a free worker slot,
then everything queued at that moment, so the per-job round trip is shared under load while a lone message goes
out at once (switchd/batches.py, shared with the intake examiners).

Failure. A token failure raises HsmUnavailable in the worker; the worker drops its session and the next job logs in
afresh, so signing resumes by itself once the HSM is back. Every message of a failed batch gets HsmUnavailable:
the caller keeps it (in the journal) and tries again later. Nothing is ever returned unsigned.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import outcome
import trio
import trio_parallel
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.errors import HsmError, HsmUnavailable, SignatureInvalid
from hsm.settings import HsmSettings
from hsm.signer import SignedMessage, Signer
from hsm.xmldsig import Verified, verify_envelope
from switchd.batches import BatchQueue

_DER = Encoding.DER
ANSWER_TIMEOUT_S = 30.0  # the longest a caller waits for its batch to be signed

# --- worker process side ------------------------------------------------------------------------------------

# One Signer per worker process, kept between jobs: logging in is the cost paid once per process. Process-global
# by design (trio-parallel keeps the process between jobs), like switchd/workers.py.
_WORKER_SIGNER: dict[tuple[Any, ...], Signer] = {}


def _connection(settings: HsmSettings) -> tuple[Any, ...]:
    return (settings.module, settings.token, settings.pin_file, settings.pin_env, settings.softhsm2_conf)


def _signer(settings: HsmSettings) -> Signer:
    key = _connection(settings)
    signer = _WORKER_SIGNER.get(key)
    if signer is None:
        signer = Signer.open(settings)
        _WORKER_SIGNER[key] = signer
    return signer


def _drop(settings: HsmSettings) -> None:
    signer = _WORKER_SIGNER.pop(_connection(settings), None)
    if signer is not None:
        signer.close()


def prepare_worker(settings: HsmSettings) -> dict[str, bytes]:
    """Runs in a worker: log in (once per process), check the keys; returns each key's DER certificate."""
    try:
        return _signer(settings).certificates(settings)
    except HsmUnavailable:
        _drop(settings)
        raise


# A job item: ("sign", envelope) or ("verify", envelope, DER certificates, check time or None).
Item = tuple[Any, ...]
ItemResult = SignedMessage | HsmError | tuple[bytes, str]


def run_batch(settings: HsmSettings, items: Sequence[Item]) -> list[ItemResult]:
    """Runs in a worker: sign and verify a batch; per-item errors in place, HsmUnavailable for the whole batch."""
    to_sign = [i for i, item in enumerate(items) if item[0] == "sign"]
    results: list[ItemResult | None] = [None] * len(items)
    if to_sign:
        try:
            signed = _signer(settings).sign([items[i][1] for i in to_sign], settings)
        except HsmUnavailable:
            _drop(settings)  # the next job logs in afresh: this is how signing recovers once the HSM is back
            raise
        for i, r in zip(to_sign, signed, strict=True):
            results[i] = r
    for i, item in enumerate(items):
        if item[0] == "verify":
            _, data, ders, at = item
            certs = [x509.load_der_x509_certificate(d) for d in ders]
            try:
                v = verify_envelope(data, certs, at=at)
            except SignatureInvalid as exc:
                results[i] = exc
            else:
                results[i] = (v.cert.public_bytes(_DER), v.algorithm)
    return [r for r in results if r is not None]


# --- daemon side --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningStatistics:
    workers: int
    batches: int
    items: int
    ready: bool
    last_error: str | None


class SigningService:
    """Signs outbound envelopes and verifies inbound ones in `workers` signer processes.

    Use: `await nursery.start(service.run)` (raises HsmUnavailable if the token cannot be reached or the PIN is
    wrong, unless `require_ready=False`), then `await service.sign([...])` / `await service.verify(...)` from any
    task. `reload(settings)` switches the active key (and key list) for the next batches.
    """

    def __init__(self, settings: HsmSettings, *, workers: int | None = None, batch_max: int | None = None) -> None:
        self._settings = settings
        # Default cores - 1, like the intake workers: the daemon's own thread (HTTP, journal, delivery) keeps a core.
        self.workers = workers or settings.workers or max(1, (os.cpu_count() or 1) - 1)
        self.queue = BatchQueue[Item, ItemResult](self.workers, batch_max or settings.batch_max)
        self.certificates: dict[str, x509.Certificate] = {}
        self.ready = False
        self.last_error: str | None = None
        self._ready_event = trio.Event()

    @property
    def settings(self) -> HsmSettings:
        return self._settings

    def reload(self, settings: HsmSettings) -> None:
        """Use `settings` (e.g. a new active key) from the next batch on. Messages signed before stay verifiable
        as long as their key stays configured (its certificate is in `certificates` after the next warm-up)."""
        self._settings = settings

    def statistics(self) -> SigningStatistics:
        return SigningStatistics(self.workers, self.queue.batches, self.queue.jobs, self.ready, self.last_error)

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def run(
        self,
        *,
        require_ready: bool = True,
        retry_s: float = 5.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Spawn the workers, log each in, then serve jobs until cancelled.

        With `require_ready` (default) a token that cannot be used raises HsmUnavailable out of `nursery.start`.
        Without it, `run` reports started anyway, keeps `ready` False and `last_error` set, and tries again every
        `retry_s` seconds (sign calls meanwhile fail fast with HsmUnavailable).
        """
        failed: HsmUnavailable | None = None
        async with trio_parallel.open_worker_context(idle_timeout=math.inf, grace_period=10.0) as ctx:
            try:
                await self._warm(ctx)
            except HsmUnavailable as exc:
                if require_ready:
                    failed = exc
            if failed is None:
                async with trio.open_nursery() as nursery:
                    if not self.ready:
                        nursery.start_soon(self._keep_warming, ctx, retry_s)
                    task_status.started()
                    await self.queue.serve(partial(self._run_batch, ctx))
        # Raised here, after the worker context closed, so `nursery.start` sees HsmUnavailable itself rather than
        # an ExceptionGroup around it.
        if failed is not None:
            raise failed

    async def _warm(self, ctx: trio_parallel.WorkerContext) -> None:
        # One concurrent login job per worker: each lands in its own process (a busy worker takes no second job).
        settings = self._settings
        results: list[outcome.Outcome[dict[str, bytes]]] = []

        async def one() -> None:
            results.append(await outcome.acapture(ctx.run_sync, prepare_worker, settings))

        async with trio.open_nursery() as warm:
            for _ in range(self.workers):
                warm.start_soon(one)
        for r in results:
            if isinstance(r, outcome.Error):
                self.ready = False
                self.last_error = str(_as_hsm_error(r.error))
                raise _as_hsm_error(r.error)
        for label, der in results[0].unwrap().items():
            self.certificates[label] = x509.load_der_x509_certificate(der)
        self.ready = True
        self.last_error = None
        self._ready_event.set()

    async def _keep_warming(self, ctx: trio_parallel.WorkerContext, retry_s: float) -> None:
        while not self.ready:
            await trio.sleep(retry_s)
            try:
                await self._warm(ctx)
            except HsmUnavailable:
                continue

    async def _run_batch(
        self, ctx: trio_parallel.WorkerContext, items: list[Item]
    ) -> list[outcome.Outcome[ItemResult]]:
        try:
            results = await ctx.run_sync(run_batch, self._settings, items)
        except BaseException as exc:
            error = _as_hsm_error(exc)
            if isinstance(error, HsmUnavailable):
                self.ready = False
                self.last_error = str(error)
            raise error from None
        if any(item[0] == "sign" for item in items):
            # A batch signed: the token is usable again after a runtime failure (readiness follows it).
            self.ready, self.last_error = True, None
            self._ready_event.set()
        return [outcome.Value(r) for r in results]

    async def _submit(self, items: Sequence[Item]) -> list[ItemResult]:
        # Bounded: a token that hangs (a network HSM gone quiet) must not hold up delivery, or shutdown, for ever.
        try:
            results = await self.queue.submit(items, ANSWER_TIMEOUT_S)
        except trio.TooSlowError:
            raise HsmUnavailable(f"no answer from the signer processes within {ANSWER_TIMEOUT_S:g} s") from None
        return [r.unwrap() for r in results]

    async def sign(self, envelopes: Sequence[bytes]) -> list[SignedMessage]:
        """Sign each envelope (`<AnyRoot><AppHdr/><Document/></AnyRoot>`) with the active key, in order.

        Raises HsmUnavailable if the token cannot sign now (nothing is returned, the caller retries later) and
        SigningError for an envelope that is not AppHdr + Document or is already signed.
        """
        results = await self._submit([("sign", e) for e in envelopes])
        out: list[SignedMessage] = []
        for r in results:
            if isinstance(r, HsmError):
                raise r
            assert isinstance(r, SignedMessage)
            out.append(r)
        return out

    async def verify(
        self, envelope: bytes, certs: Sequence[x509.Certificate] | None = None, *, at: datetime | None = None
    ) -> Verified:
        """Verify the BAH signature against `certs` (default: the certificates of every configured key).

        Raises SignatureInvalid naming the failing part (see hsm.xmldsig.verify_tree).
        """
        trusted = list(certs) if certs is not None else list(self.certificates.values())
        ders = tuple(c.public_bytes(_DER) for c in trusted)
        (r,) = await self._submit([("verify", envelope, ders, at)])
        if isinstance(r, HsmError):
            raise r
        assert isinstance(r, tuple)
        return Verified(x509.load_der_x509_certificate(r[0]), r[1])


def _as_hsm_error(exc: BaseException) -> HsmError:
    if isinstance(exc, HsmError):
        return exc
    # A worker that died (SoftHSM aborting, OOM kill) is a token problem as far as the caller is concerned:
    # the message waits and is signed once a fresh worker can log in.
    return HsmUnavailable(f"signer worker failed: {type(exc).__name__}: {exc}")
