"""Directory connector: each delivery becomes one file in a folder (a bank's pickup point, a shared drop), written
atomically and durably.

Rules:

- A file appears under its final name complete or not at all: the payload goes to a hidden temp file in the same
  folder (`.<final name>.<random>.tmp`, so a pickup that ignores dot files never sees it), is fsynced, then
  hard-linked to the final name (which fails if the name exists: nothing is ever overwritten, even by a
  concurrent writer), the temp name is removed and the folder is fsynced. `deliver` returns only after that.
  On a file system without hard links the temp file is renamed instead, after checking the name is free.
- Names. The first delivery of an outbox entry is `<outbox_id>.xml`. If that file already holds the same bytes
  (a retry after an uncertain attempt) nothing is written and the delivery succeeds: the bank has it already.
  If it holds different bytes (a replay: the AppHdr now says PssblDplct; a re-signed copy) the earlier file is
  kept and this one is `<outbox_id>.<attempt>.xml`; should that name also hold other bytes, the copy is
  `<outbox_id>.<attempt>.<first 16 hex of its SHA-256>.xml`. So an earlier file is never silently replaced, and
  a repeated attempt never writes a second copy of identical bytes.
- Temp files a crash left behind are removed before the connector's first write (one switchd per folder).
- Disk errors (full, read-only, permissions, a missing folder) raise DeliveryFailed(retryable=True): an operator
  can fix them and the outbox retries. An outbox id that is not a safe file name is not retryable.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio

from switchd.connectors import Delivery, DeliveryFailed

log = logging.getLogger("switchd.directory")

# Outbox ids are switchd's own (letters, digits); anything else must not become a path component.
# Outbox ids are "<message id>.<part>": dots are allowed after the first character (no hidden files, no "..").
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_TEMP = re.compile(r"\..+\.xml\.[^.]+\.tmp")
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS})


@dataclass(frozen=True)
class DirectorySettings:
    """`directory`: where files go. `create`: make it (and its parents) when missing; off by default so that
    an unmounted share fails loudly instead of filling the root file system. `file_mode`: permissions of the
    files written."""

    directory: Path
    create: bool = False
    file_mode: int = 0o640

    def __post_init__(self) -> None:
        if not 0 <= self.file_mode <= 0o777:
            raise ValueError(f"file_mode {self.file_mode:o} is not a permission mode")


class DirectoryConnector:
    """Writes each delivery to `settings.directory` (see the module docstring); the receipt is the file name."""

    def __init__(self, name: str, settings: DirectorySettings) -> None:
        self.name = name
        self.settings = settings
        self._swept = False
        self._sweep_lock = trio.Lock()

    async def deliver(self, delivery: Delivery) -> str | None:
        """Write `delivery.payload` durably; returns the file name it is in (new or already there).

        Raises DeliveryFailed(retryable=False) for an outbox id that is not a safe file name, or when every name
        this delivery may take holds other bytes; DeliveryFailed(retryable=True) for any OSError. A failed write
        leaves no file under a final name and no temp file.
        """
        if _SAFE_ID.fullmatch(delivery.outbox_id) is None or ".." in delivery.outbox_id:
            raise DeliveryFailed(f"outbox id {delivery.outbox_id!r} is not a safe file name", retryable=False)
        if not self._swept:
            # Every delivery passes here before writing, so the sweep never races this connector's own temp files.
            async with self._sweep_lock:
                if not self._swept:
                    await trio.to_thread.run_sync(self._prepare)
                    self._swept = True
        try:
            return await trio.to_thread.run_sync(self._write, delivery)
        except OSError as exc:
            raise DeliveryFailed(f"{self.settings.directory}: {exc.strerror or exc}", retryable=True) from None

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    # -- in a worker thread ---------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        directory = self.settings.directory
        if not directory.is_dir():
            if not self.settings.create:
                raise DeliveryFailed(f"{directory} does not exist or is not a directory", retryable=True)
            try:
                directory.mkdir(parents=True, exist_ok=True)
                _fsync_dir(directory.parent)
            except OSError as exc:
                raise DeliveryFailed(f"cannot create {directory}: {exc.strerror or exc}", retryable=True) from None
        try:
            leftovers = [p for p in directory.iterdir() if _TEMP.fullmatch(p.name) and p.is_file()]
        except OSError as exc:
            raise DeliveryFailed(f"cannot list {directory}: {exc.strerror or exc}", retryable=True) from None
        for path in leftovers:
            try:
                path.unlink()
                log.info("%s: removed %s, left by an interrupted write", self.name, path.name)
            except OSError as exc:  # not fatal: a stale temp file is never mistaken for a delivery
                log.warning("%s: cannot remove %s: %s", self.name, path.name, exc.strerror)

    def _write(self, delivery: Delivery) -> str:
        directory = self.settings.directory
        payload = delivery.payload
        digest = hashlib.sha256(payload).hexdigest()
        stem = delivery.outbox_id
        names = (f"{stem}.xml", f"{stem}.{delivery.attempt}.xml", f"{stem}.{delivery.attempt}.{digest[:16]}.xml")
        for name in names:
            path = directory / name
            existing = _read(path)
            if existing is None:
                if self._create(directory, name, payload):
                    return name
                existing = _read(path)  # another writer took the name between our look and our link
            if existing == payload:
                _fsync_dir(directory)  # it may be from an attempt that died before its folder fsync
                return name
        raise DeliveryFailed(f"{', '.join(names)} all exist with other content", retryable=False)

    def _create(self, directory: Path, name: str, payload: bytes) -> bool:
        """Write `payload` under `name` atomically; False if the name was taken meanwhile."""
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            try:
                os.fchmod(fd, self.settings.file_mode)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            final = directory / name
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                if final.exists():
                    return False
                os.rename(tmp, final)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # before the folder fsync, so the link and the unlink are made durable together
            _fsync_dir(directory)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
