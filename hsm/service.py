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

Wrong PIN. Real HSMs lock the user PIN after a few failed logins, so a PIN the token rejected (PinRejected) is not
tried again: every job says whether its worker may log in, and after a rejection it may not while the PIN source
is unchanged (hsm.token.pin_source_state: the PIN file's identity and times). Signer processes that are logged in
keep signing. Once the file changes, one job at a time may try the new PIN; `reload` (new settings) and `check`
(an operator's reload) allow one attempt too.

Start-up. Readiness needs the token, the PIN, the keys and their certificates checked, not a signer process: the
daemon checks them itself, in a thread (log in, look everything up, close), so it need not wait ~0.5 s for a
process to spawn and import; the signer processes then warm in the background (a batch sent meanwhile waits for its
worker). A wrong PIN so costs one failed login, whatever the number of workers; a retry does the same check. The
price: the PKCS#11 module is loaded in the daemon process too, so a module that crashes at login takes the daemon
down with it (systemd restarts it), where before it took a signer process.

Stopping. Signer processes ignore SIGTERM and SIGINT (switchd.batches.worker_pool): `systemctl stop` signals the
whole process group, and only the daemon decides when its signers stop (after the delivery workers are done with
them). A signer that died anyway does not turn shutdown into a crash: the pool logs it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import outcome
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.canonical import CanonicalEnvelope, digests, insert_signature
from hsm.errors import HsmError, HsmUnavailable, PinRejected, SignatureInvalid
from hsm.settings import HsmSettings
from hsm.signer import SignedMessage, Signer
from hsm.token import load_module, login_lock, pin_source_state, use_softhsm_conf
from hsm.xmldsig import Verified, verify_envelope
from switchd.batches import BatchQueue, WorkerPool, worker_pool

_DER = Encoding.DER
log = logging.getLogger("switchd.hsm")
ANSWER_TIMEOUT_S = 30.0  # the longest a caller waits for its batch to be signed
T = TypeVar("T")

# --- worker process side ------------------------------------------------------------------------------------

# One Signer per worker process, kept between jobs: logging in is the cost paid once per process. Process-global
# by design (trio-parallel keeps the process between jobs), like switchd/workers.py.
_WORKER_SIGNER: dict[tuple[Any, ...], Signer] = {}


def _signer(settings: HsmSettings, may_login: bool = True) -> Signer:
    key = settings.connection
    signer = _WORKER_SIGNER.get(key)
    if signer is None:
        if not may_login:
            # The daemon's answer to a PIN the token rejected (see the module docstring): no new login with it.
            raise PinRejected(f"not logging in to token {settings.token!r} again with the PIN it rejected")
        signer = Signer.open(settings)
        _WORKER_SIGNER[key] = signer
    return signer


def _drop(settings: HsmSettings) -> None:
    signer = _WORKER_SIGNER.pop(settings.connection, None)
    if signer is not None:
        signer.close()


def prepare_worker(settings: HsmSettings, may_login: bool = True) -> dict[str, bytes]:
    """Runs in a worker: log in (once per process, if `may_login`), check the keys; returns each key's DER
    certificate. Raises HsmUnavailable (PinRejected when the PIN was refused, or a login was not allowed)."""
    try:
        return _signer(settings, may_login).certificates(settings)
    except HsmUnavailable:
        _drop(settings)
        raise


def check_here(settings: HsmSettings, may_login: bool = True) -> dict[str, bytes]:
    """Runs in a thread of the daemon: log in (if `may_login`), check every configured key and its certificate,
    close. Returns each key's DER certificate; raises HsmUnavailable (PinRejected) like `prepare_worker`.
    One call at a time in a process (SoftHSM runs without locks here), and never in a signer process."""
    if not may_login:
        raise PinRejected(f"not logging in to token {settings.token!r} again with the PIN it rejected")
    with _CHECK_HERE:
        return _check_here(settings)


# SoftHSM runs without locks under python-pkcs11: the daemon's own checks must never overlap (they do not today:
# one retry loop awaits each in turn; this makes it a rule rather than a coincidence).
_CHECK_HERE = threading.Lock()


def _check_here(settings: HsmSettings) -> dict[str, bytes]:
    # The daemon keeps the module loaded between checks, and a token created since (switchctl hsm init-dev while
    # the daemon waits for it) is only seen by a module initialised again; under the lock, as every module set-up.
    with login_lock(settings):
        load_module(settings, rescan=True)
    signer = Signer.open(settings)
    try:
        return signer.certificates(settings)
    finally:
        signer.close()


def check_worker(settings: HsmSettings, may_login: bool = True) -> dict[str, bytes]:
    """Runs in a worker: `prepare_worker` for settings the daemon does not sign with yet. A key or certificate
    missing from them leaves the session as it was: the running settings still sign with it."""
    return _signer(settings, may_login).certificates(settings)


# A job item: ("sign", envelope) or ("verify", envelope, DER certificates, check time or None).
Item = tuple[Any, ...]
ItemResult = SignedMessage | HsmError | tuple[bytes, str]


def run_batch(settings: HsmSettings, items: Sequence[Item], may_login: bool = True) -> list[ItemResult]:
    """Runs in a worker: sign and verify a batch; per-item errors in place, HsmUnavailable for the whole batch.
    A worker without a session logs in only if `may_login`."""
    to_sign = [i for i, item in enumerate(items) if item[0] == "sign"]
    results: list[ItemResult | None] = [None] * len(items)
    if to_sign:
        try:
            signed = _signer(settings, may_login).sign([items[i][1] for i in to_sign], settings)
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
    task. To change keys: `await service.check(settings)`, then `reload(settings)` for the next batches.
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
        self.workers_warm = trio.Event()  # every signer process logged in (after ready: they warm in the background)
        self._pool: WorkerPool | None = None
        # The pin_source_state of the PIN the token last rejected, _RETRY_ONCE after a reload (one attempt allowed),
        # None: workers may log in. See the module docstring.
        self._rejected_pin: tuple[object, ...] | None = None
        self._retry_lock = trio.Lock()  # one job at a time may try a changed PIN
        self._checked: tuple[HsmSettings, dict[str, bytes]] | None = None  # what the last good `check` saw

    @property
    def settings(self) -> HsmSettings:
        return self._settings

    def reload(self, settings: HsmSettings) -> None:
        """Use `settings` (e.g. a new active key) from the next batch on. Call `check(settings)` first: nothing here
        looks at the token. Messages signed before stay verifiable as long as their key stays configured."""
        self._settings = settings
        if self._checked is not None and self._checked[0] == settings:
            for label, der in self._checked[1].items():
                self.certificates[label] = x509.load_der_x509_certificate(der)
        # New settings: a PIN the token rejected may be tried once more (an operator acted). Once: the sentinel
        # differs from every PIN source, so the first job under the lock logs in, and the others wait their turn and
        # see what it learnt (with None here, a signing batch and the retry loop each offered the wrong PIN).
        if self._rejected_pin is not None:
            self._rejected_pin = _RETRY_ONCE

    async def check(self, settings: HsmSettings) -> None:
        """Whether `settings` can sign, before `reload(settings)`: in a signer process, log in if need be and look up
        every configured key and its certificate on the token.

        Raises HsmUnavailable naming what is wrong (a key label that is not on the token, a missing certificate, the
        token unreachable or refusing the PIN: a PIN it rejected before is tried once more, this is an operator's
        reload). Readiness and the running settings are left as they were.
        """
        pool = self._pool
        if pool is None:
            raise HsmUnavailable("the signing service is not running")

        async def job(may_login: bool) -> dict[str, bytes]:
            # Cancellable (it kills the worker): a token that hangs must not hold up the daemon's reloads for ever.
            ders: dict[str, bytes] = await pool.run_sync(check_worker, settings, may_login, kill_on_cancel=True)
            return ders

        try:
            with trio.fail_after(ANSWER_TIMEOUT_S):
                ders = await self._login_rule(job, force=True)
        except trio.TooSlowError:
            raise HsmUnavailable(f"no answer from the signer processes within {ANSWER_TIMEOUT_S:g} s") from None
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except BaseException as exc:
            raise _as_hsm_error(exc) from None
        self._checked = (settings, ders)

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
        """Check the token in this process, report started, then serve jobs until cancelled while the signer
        processes spawn and log in (`workers_warm` is set once they all have).

        With `require_ready` (default) a token that cannot be used raises HsmUnavailable out of `nursery.start`.
        Without it, `run` reports started anyway, keeps `ready` False and `last_error` set, and tries again every
        `retry_s` seconds (sign calls meanwhile fail fast with HsmUnavailable; a rejected PIN is not tried again
        until it changes). Signer processes that died before shutdown are logged, not raised.
        """
        failed: HsmUnavailable | None = None
        try:
            async with worker_pool(None, self.workers, "signer") as pool, trio.open_nursery() as nursery:
                self._pool = pool
                try:
                    await self._warm(pool, nursery)
                except HsmUnavailable as exc:
                    if require_ready:
                        failed = exc
                        nursery.cancel_scope.cancel()
                if failed is None:
                    nursery.start_soon(self._keep_warming, pool, nursery, retry_s)
                    task_status.started()
                    await self.queue.serve(partial(self._run_batch, pool))
        finally:
            self._pool = None
        # Raised here, after the worker context closed, so `nursery.start` sees HsmUnavailable itself rather than
        # an ExceptionGroup around it.
        if failed is not None:
            raise failed

    async def _login_rule(self, job: Callable[[bool], Awaitable[T]], *, force: bool = False) -> T:
        """Run `job(may_login)` under the PIN rule of the module docstring and record what it says about the PIN.

        `force`: a login may be tried even with a PIN the token rejected (a check on reload)."""
        if self._rejected_pin is None and not force:
            return await self._recording_pin(job, True)  # the usual case: no stat, no lock
        async with self._retry_lock:
            may_login = True
            if self._rejected_pin is not None and not force:
                now = await trio.to_thread.run_sync(pin_source_state, self._settings)
                may_login = now != self._rejected_pin
            result = await self._recording_pin(job, may_login)
            if may_login:
                self._rejected_pin = None  # a login was allowed and nothing refused the PIN
            return result

    async def _recording_pin(self, job: Callable[[bool], Awaitable[T]], may_login: bool) -> T:
        try:
            return await job(may_login)
        except PinRejected as exc:
            if exc.pin_source is not None:  # a real refusal by the token (not a login we did not allow)
                self._rejected_pin = exc.pin_source
            raise

    def _failed(self, exc: BaseException) -> HsmError:
        """The HsmError a failed job stands for; an HsmUnavailable makes the service not ready, saying why."""
        error = _as_hsm_error(exc)
        if not isinstance(error, HsmUnavailable):
            return error
        self.ready = False
        if isinstance(error, PinRejected):
            if error.pin_source is None and self.last_error:
                return PinRejected(self.last_error)  # a login we did not allow: the rejection is still the news
            error = PinRejected(f"{error}; {_pin_hint(self._settings)}")
        self.last_error = str(error)
        return error

    async def _ruled(self, job: Callable[[bool], Awaitable[T]]) -> T:
        """`job` under the PIN rule, a failure as the HsmError it stands for (readiness follows it)."""
        try:
            return await self._login_rule(job)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except BaseException as exc:
            raise self._failed(exc) from None

    async def _warm(self, pool: WorkerPool, nursery: trio.Nursery) -> None:
        """Check the token here (see the module docstring), say ready, then warm the signer processes in `nursery`."""
        settings = self._settings

        async def here(may_login: bool) -> dict[str, bytes]:
            use_softhsm_conf(settings)  # here, on the trio thread: no other thread runs while it changes
            return await trio.to_thread.run_sync(check_here, settings, may_login)

        ders = await self._ruled(here)
        for label, der in ders.items():
            self.certificates[label] = x509.load_der_x509_certificate(der)
        self.ready = True
        self.last_error = None
        self._ready_event.set()
        nursery.start_soon(self._warm_workers, pool, settings)

    async def _warm_workers(self, pool: WorkerPool, settings: HsmSettings) -> None:
        """Log every signer process in: one worker first (a PIN changed since the check then costs one failed
        login, not one per worker), then one concurrent job per worker, each landing in its own process (a busy
        worker takes no second job; the first one's is a no-op). A failure is the readiness's news (`_failed`):
        `_keep_warming` checks again, and the next batch's login tries again."""

        async def job(may_login: bool) -> dict[str, bytes]:
            ders: dict[str, bytes] = await pool.run_sync(prepare_worker, settings, may_login)
            return ders

        failed: list[HsmError] = []

        async def one() -> None:
            try:
                await self._ruled(job)
            except HsmError as exc:
                failed.append(exc)

        await one()
        if not failed and self.workers > 1:
            async with trio.open_nursery() as warm:
                for _ in range(self.workers):
                    warm.start_soon(one)
        if not failed:
            self.workers_warm.set()
            log.info("%d signer process(es) logged in", self.workers)

    async def _keep_warming(self, pool: WorkerPool, nursery: trio.Nursery, retry_s: float) -> None:
        """For as long as the service runs: whenever it is not ready (the token unusable at start, or a failure
        since), check again every `retry_s` seconds (under the PIN rule: a rejected PIN is not offered again)."""
        while True:
            await trio.sleep(retry_s)
            if self.ready:
                continue
            try:
                await self._warm(pool, nursery)
            except HsmUnavailable:
                continue

    async def _run_batch(self, pool: WorkerPool, items: list[Item]) -> list[outcome.Outcome[ItemResult]]:
        signs = any(item[0] == "sign" for item in items)

        async def job(may_login: bool) -> list[ItemResult]:
            results: list[ItemResult] = await pool.run_sync(run_batch, self._settings, items, may_login)
            return results

        try:
            # Only signing needs a session: verifying alone never logs in, so it skips the PIN rule.
            results = await (self._login_rule(job) if signs else job(True))
        except BaseException as exc:  # even a cancellation: BatchQueue gives each caller an answer, never a raise
            # One Error outcome per job, not a raise: BatchQueue would hand every caller of the batch the same
            # Outcome, and an Outcome unwraps only once (the second caller would get AlreadyUsedError).
            error = self._failed(exc)
            return [outcome.Error(error) for _ in items]
        if signs:
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

    async def sign(self, envelopes: Sequence[bytes | CanonicalEnvelope]) -> list[SignedMessage]:
        """Sign each envelope (`<AnyRoot><AppHdr/><Document/></AnyRoot>`, as bytes or laid out for signing by
        hsm.canonical) with the active key, in order.

        Of a laid-out envelope only its two digests go to a signer process (88 bytes instead of the envelope out and
        the signed envelope back, ~11 KB for a 4.5 KB pacs.008), and the ds:Signature that comes back is spliced
        in here.

        Raises HsmUnavailable if the token cannot sign now (nothing is returned, the caller retries later) and
        SigningError for an envelope that is not AppHdr + Document or is already signed.
        """
        items = [("sign", digests(e) if isinstance(e, CanonicalEnvelope) else e) for e in envelopes]
        results = await self._submit(items)
        out: list[SignedMessage] = []
        for envelope, r in zip(envelopes, results, strict=True):
            if isinstance(r, HsmError):
                raise r
            assert isinstance(r, SignedMessage)
            if isinstance(envelope, CanonicalEnvelope):
                r = SignedMessage(insert_signature(envelope, r.data), r.key_label, r.algorithm, r.cert_sha256)
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


_RETRY_ONCE: tuple[object, ...] = ("retry once after a reload",)  # equal to no pin_source_state


def _pin_hint(settings: HsmSettings) -> str:
    if settings.pin_env is not None:
        return f"switchd will not log in with it again until it restarts (with another {settings.pin_env})"
    return "switchd will not log in with it again until the PIN file changes (write or touch it)"


def _as_hsm_error(exc: BaseException) -> HsmError:
    if isinstance(exc, HsmError):
        return exc
    # A worker that died (SoftHSM aborting, OOM kill) is a token problem as far as the caller is concerned:
    # the message waits and is signed once a fresh worker can log in.
    return HsmUnavailable(f"signing failed to run: {type(exc).__name__}: {exc}")
