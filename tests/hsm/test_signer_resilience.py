"""The signing service against a real SoftHSM token when things go wrong: a PIN the token rejects is not tried again
until it changes, signer processes outlive SIGTERM/SIGINT sent to the process group, a signer that died does not
turn shutdown into a crash, and a reload to a key that is not on the token is refused before it is used."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from hsm.errors import HsmUnavailable, PinRejected
from hsm.service import SigningService
from hsm.settings import HsmSettings, KeySettings
from hsm.xmldsig import verify_envelope
from switchd.config import load_config
from tests.builders import pacs008
from tests.conftest import spawned_children, switchctl
from tests.hsm.conftest import DevToken, signers_of, signs_once_the_pin_is_right, write_hsm_config

START_TIMEOUT = 60  # spawning workers and logging in: only bounds a hang
RETRY_S = 0.2
IN_OPEN, IN_CLOSE = 0x20, 0x08 | 0x10  # <sys/inotify.h>: IN_CLOSE is IN_CLOSE_WRITE | IN_CLOSE_NOWRITE


class FileOpens:
    """Counts the opens of one file by any process (Linux inotify): each login reads the PIN file once, so this
    counts login attempts from outside switchd's code. Stat calls do not count; the test's own writes do.

    The kernel merges an unread event into the previous one when they are identical, so closes are watched too:
    sequential opens then queue as open, close, open, close and none merges (only two opens overlapping in time
    could, and that undercount would need concurrent logins, which these tests check do not happen anyway)."""

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self._fd >= 0, os.strerror(ctypes.get_errno())
        watch = self._libc.inotify_add_watch(self._fd, os.fsencode(path), IN_OPEN | IN_CLOSE)
        assert watch >= 0, os.strerror(ctypes.get_errno())
        self.opens = 0

    def count(self) -> int:
        """Opens so far (reads the events queued since the last call)."""
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return self.opens
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                self.opens += bool(mask & IN_OPEN)
                offset += 16 + length

    def close(self) -> None:
        os.close(self._fd)


@contextmanager
def counting_opens(path: Path) -> Iterator[FileOpens]:
    watch = FileOpens(path)
    try:
        yield watch
    finally:
        watch.close()


async def start_service(nursery: trio.Nursery, service: SigningService, *, require_ready: bool = True) -> None:
    with trio.fail_after(START_TIMEOUT):
        await nursery.start(
            lambda task_status: service.run(require_ready=require_ready, retry_s=RETRY_S, task_status=task_status)
        )


async def sign_refused(service: SigningService, refused: list[PinRejected]) -> None:
    """Sign one message; its PinRejected goes into `refused` (anything else fails the test)."""
    try:
        await service.sign([pacs008()])
    except PinRejected as exc:
        refused.append(exc)


@dataclass(frozen=True)
class WrongPin:
    """A signing service started with a PIN file the token rejects, and the count of that file's opens."""

    service: SigningService
    pin: Path
    opens: FileOpens


@asynccontextmanager
async def started_with_wrong_pin(
    dev_token: DevToken, tmp_path: Path, wrong_pin: str, *, workers: int
) -> AsyncIterator[WrongPin]:
    """`workers` signer processes whose PIN file holds `wrong_pin`, started without waiting to be ready; the PIN
    file's opens are counted from the start (the test's own write before it is not). Stopped on leaving."""
    pin = tmp_path / "user.pin"
    pin.write_text(wrong_pin)
    service = SigningService(msgspec.structs.replace(dev_token.settings, pin_file=str(pin)), workers=workers)
    with counting_opens(pin) as opens:
        async with trio.open_nursery() as nursery:
            await start_service(nursery, service, require_ready=False)
            yield WrongPin(service, pin, opens)
            nursery.cancel_scope.cancel()


async def test_a_rejected_pin_is_tried_once_then_not_again_until_the_pin_file_changes(
    dev_token: DevToken, tmp_path: Path
) -> None:
    async with started_with_wrong_pin(dev_token, tmp_path, "wrong-pin-4242\n", workers=2) as rig:
        service, pin, opens = rig.service, rig.pin, rig.opens
        assert not service.ready and service.last_error is not None
        assert "rejected the PIN" in service.last_error and "until the PIN file changes" in service.last_error
        assert "wrong-pin-4242" not in service.last_error
        # Several retry periods go by while deliveries keep asking to sign (as the delivery probe does).
        for _ in range(10):
            with pytest.raises(PinRejected, match="rejected the PIN"):
                await service.sign([pacs008()])
            await trio.sleep(RETRY_S / 2)
        refused: list[PinRejected] = []

        async with trio.open_nursery() as callers:  # and concurrently
            for _ in range(4):
                callers.start_soon(sign_refused, service, refused)
        assert len(refused) == 4
        assert opens.count() == 1, "the wrong PIN was offered to the token more than once"
        assert not service.ready and "rejected the PIN" in (service.statistics().last_error or "")

        # The operator fixes the PIN file: signing comes back by itself.
        await signs_once_the_pin_is_right(service, pin, dev_token, "PIN-FIXED")


async def test_a_changed_but_still_wrong_pin_and_a_reload_each_get_one_attempt(
    dev_token: DevToken, tmp_path: Path
) -> None:
    async with started_with_wrong_pin(dev_token, tmp_path, "wrong-pin-1111\n", workers=1) as rig:
        service, pin, opens = rig.service, rig.pin, rig.opens
        assert opens.count() == 1

        pin.write_text("wrong-pin-2222\n")  # another wrong PIN: the write is one open, the retry one more
        with trio.fail_after(START_TIMEOUT):
            while opens.count() < 3:
                await trio.sleep(RETRY_S / 4)
        for _ in range(3):
            await trio.sleep(RETRY_S)
            with pytest.raises(PinRejected):
                await service.sign([pacs008()])
        assert opens.count() == 3

        # A reload (another active key) is an operator acting: one more attempt, then none again.
        service.reload(msgspec.structs.replace(service.settings, active="sig-ec"))
        for _ in range(3):
            with pytest.raises(PinRejected):
                await service.sign([pacs008()])
            await trio.sleep(RETRY_S)
        assert opens.count() == 4


async def test_after_a_reload_concurrent_batches_share_the_one_retry_of_a_rejected_pin(
    dev_token: DevToken, tmp_path: Path
) -> None:
    """Two batches in flight at once in two signer processes right after a reload: one login between them."""
    async with started_with_wrong_pin(dev_token, tmp_path, "wrong-pin-5151\n", workers=2) as rig:
        service, opens = rig.service, rig.opens
        assert opens.count() == 1
        service.reload(msgspec.structs.replace(service.settings, active="sig-ec"))
        refused: list[PinRejected] = []

        async with trio.open_nursery() as callers:
            callers.start_soon(sign_refused, service, refused)
            await trio.testing.wait_all_tasks_blocked()  # the first batch is out: the second is a batch of its own
            callers.start_soon(sign_refused, service, refused)
        assert len(refused) == 2
        assert service.statistics().batches >= 2
        assert opens.count() == 2, "the wrong PIN was offered again by the second batch after the reload"


async def test_ready_comes_from_a_check_in_the_daemon_not_from_a_spawned_signer(dev_token: DevToken) -> None:
    """Readiness (token, PIN, keys, certificates) is checked in this process, so start-up does not wait for a
    signer process to spawn and log in (~0.5 s); they warm afterwards, and the first batch waits for one."""
    service = SigningService(dev_token.settings, workers=2)
    async with trio.open_nursery() as nursery:
        await start_service(nursery, service)
        # Right after start (a spawned process needs far longer to load SoftHSM than this takes):
        assert service.ready and set(service.certificates) == {"sig-rsa", "sig-ec"}
        assert signers_of() == [] and not service.workers_warm.is_set()
        with trio.fail_after(START_TIMEOUT):
            (signed,) = await service.sign([pacs008(msg_id="EARLY-SIGN")])
            verify_envelope(signed.data, [service.certificates["sig-rsa"]])
            await service.workers_warm.wait()
        assert len(signers_of()) == 2
        nursery.cancel_scope.cancel()


async def test_readiness_lost_while_the_signers_warm_comes_back_by_itself(dev_token: DevToken) -> None:
    """A signer process killed while it warms up (SIGTERM to the process group at start, the OOM killer) made
    the service not ready, and nothing checked again until a message happened to be signed: /readyz stayed 503."""
    service = SigningService(dev_token.settings, workers=2)
    async with trio.open_nursery() as nursery:
        await start_service(nursery, service, require_ready=False)
        assert service.ready
        with trio.fail_after(START_TIMEOUT):
            # Every signer killed until one dies with its warm-up job sent (one killed before that is replaced
            # by trio-parallel without a word).
            while service.ready:
                for pid in spawned_children():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await trio.sleep(0.005)
            assert "failed" in (service.last_error or "")
            while not service.ready:  # no traffic: the retry loop checks again
                await trio.sleep(RETRY_S / 4)
            (signed,) = await service.sign([pacs008(msg_id="AFTER-WARM-KILL")])
        verify_envelope(signed.data, [service.certificates["sig-rsa"]])
        nursery.cancel_scope.cancel()


async def test_a_token_created_while_the_daemon_waits_for_it_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SoftHSM lists its tokens when the module is initialised, and the daemon keeps the module loaded between
    readiness checks: `switchctl hsm init-dev` run while the daemon waited for its token went unseen for good."""
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)  # restored afterwards
    config = write_hsm_config(tmp_path)
    settings = load_config(config).hsm
    assert settings is not None and settings.softhsm2_conf is not None
    conf = Path(settings.softhsm2_conf)  # the SoftHSM config exists, its token folder is empty
    (conf.parent / "tokens").mkdir(parents=True)
    conf.write_text(f"directories.tokendir = {conf.parent / 'tokens'}\nobjectstore.backend = file\n")
    service = SigningService(settings, workers=1)
    async with trio.open_nursery() as nursery:
        await start_service(nursery, service, require_ready=False)
        assert not service.ready and "no token labelled" in (service.last_error or "")
        done = await trio.to_thread.run_sync(switchctl, config, "hsm", "init-dev")
        assert done.returncode == 0, done.stderr
        with trio.fail_after(START_TIMEOUT):
            while not service.ready:
                await trio.sleep(RETRY_S / 4)
            (signed,) = await service.sign([pacs008(msg_id="LATE-TOKEN")])
        verify_envelope(signed.data, [service.certificates["sig-rsa"]])
        nursery.cancel_scope.cancel()


def ignored_signals(pid: int) -> int:
    """The SigIgn mask of a process (bit n-1 set: signal n is ignored)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn for {pid}")


async def test_signer_processes_ignore_sigterm_and_sigint_and_keep_signing(dev_token: DevToken) -> None:
    """`systemctl stop` signals the whole process group: the signers must leave stopping to the daemon."""
    service = SigningService(dev_token.settings, workers=2)
    async with trio.open_nursery() as nursery:
        await start_service(nursery, service)
        with trio.fail_after(START_TIMEOUT):
            await service.workers_warm.wait()  # ready came first: the daemon checked the token itself
        signers = sorted(signers_of())
        assert len(signers) == 2, signers
        for pid in signers:
            mask = ignored_signals(pid)
            assert mask & (1 << (signal.SIGTERM - 1)) and mask & (1 << (signal.SIGINT - 1)), hex(mask)
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
        with trio.fail_after(START_TIMEOUT):
            signed = await service.sign([pacs008(msg_id=f"TERM-{i}") for i in range(40)])
        assert len(signed) == 40 and service.ready
        assert sorted(signers_of()) == signers  # the same processes, alive: none died, none was replaced
        nursery.cancel_scope.cancel()


def is_dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_a_signer_that_died_does_not_make_shutdown_raise(
    dev_token: DevToken, caplog: pytest.LogCaptureFixture
) -> None:
    service = SigningService(dev_token.settings, workers=1)
    with caplog.at_level(logging.WARNING, logger="switchd.hsm"):
        async with trio.open_nursery() as nursery:
            await start_service(nursery, service)
            with trio.fail_after(START_TIMEOUT):
                await service.workers_warm.wait()
            (pid,) = signers_of()
            os.kill(pid, signal.SIGKILL)  # what SIGTERM used to do to it, or the OOM killer
            with trio.fail_after(START_TIMEOUT):
                while not is_dead(pid):
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        # Reaching here is the point: no BrokenWorkerProcessError escaped the nursery.
    assert "signer processes ended uncleanly at shutdown" in caplog.text


def with_ghost_key(settings: HsmSettings, active: str) -> HsmSettings:
    """`settings` plus a configured key that is not on the token."""
    ghost = KeySettings("sig-ghost", "ec-p256")
    return msgspec.structs.replace(settings, keys=(*settings.keys, ghost), active=active)


async def test_check_refuses_settings_whose_key_is_not_on_the_token_and_changes_nothing(dev_token: DevToken) -> None:
    service = SigningService(dev_token.settings, workers=1)
    async with trio.open_nursery() as nursery:
        await start_service(nursery, service)
        with trio.fail_after(START_TIMEOUT):
            with pytest.raises(HsmUnavailable, match="no private key labelled 'sig-ghost'"):
                await service.check(with_ghost_key(dev_token.settings, "sig-ghost"))
            # Configured but not active is refused too: it could never be rotated to.
            with pytest.raises(HsmUnavailable, match="sig-ghost"):
                await service.check(with_ghost_key(dev_token.settings, "sig-rsa"))
            assert service.ready and service.last_error is None
            assert service.settings.active == "sig-rsa"
            (before,) = await service.sign([pacs008(msg_id="CHECK-1")])

            to_ec = msgspec.structs.replace(dev_token.settings, active="sig-ec")
            await service.check(to_ec)
            service.reload(to_ec)
            (after,) = await service.sign([pacs008(msg_id="CHECK-2")])
        assert (before.key_label, after.key_label) == ("sig-rsa", "sig-ec")
        verify_envelope(after.data, [service.certificates["sig-ec"]])
        nursery.cancel_scope.cancel()


async def test_check_before_the_service_runs_is_refused(dev_token: DevToken) -> None:
    with pytest.raises(HsmUnavailable, match="not running"):
        await SigningService(dev_token.settings, workers=1).check(dev_token.settings)
