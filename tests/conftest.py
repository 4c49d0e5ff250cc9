"""Shared fixtures: config files in tmp_path, an in-process daemon on 127.0.0.1:0, a real daemon process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from switchd.config import load_config
from switchd.daemon import Daemon

REPO = Path(__file__).resolve().parent.parent
SWITCHD = Path(sys.executable).parent / "switchd"
SWITCHCTL = Path(sys.executable).parent / "switchctl"
TOKENS = {"bank-a": "demo-bank-a", "bank-b": "demo-bank-b"}

CONFIG_TEMPLATE = """
[paths]
data_dir = "{data_dir}"
schemas = "{schemas}"

[http]
listen = "127.0.0.1:{port}"
max_body_bytes = {max_body}
request_timeout_s = 10.0
{tls}

[limits]
drain_timeout_s = 10.0

[workers]
intake = {workers}

[[participants]]
name = "bank-a"
bics = ["AAAAUS33XXX"]
token_sha256 = "c2f1bcf461c5f642545991f11db2ca335ee1da5b7ded58dfae51af7ae45d452e"
{bank_a_cert}

[[participants]]
name = "bank-b"
bics = ["BBBBDEFFXXX"]
token_sha256 = "c878ba2cc2ef91b968ac7ffe0baa1714cf8b7a9c08144275f411d8c9da232390"
"""


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux: the children lists of all its threads)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def proc_file(pid: int, name: str) -> bytes:
    """/proc/PID/NAME, or b"" for a process gone meanwhile."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def spawned_children() -> set[int]:
    """This process's multiprocessing-spawned children (worker processes; not its resource tracker)."""
    return {c for c in children(os.getpid()) if b"spawn_main" in proc_file(c, "cmdline")}


def write_config(
    directory: Path,
    *,
    port: int = 0,
    max_body: int = 1_048_576,
    tls: str = "",
    bank_a_cert: str = "",
    workers: int = 1,
    extra: str = "",
) -> Path:
    """The test config; `extra` is TOML appended as it is (connectors, routes, more participants)."""
    path = directory / "switchd.toml"
    path.write_text(
        CONFIG_TEMPLATE.format(
            data_dir=directory / "var",
            schemas=REPO / "schemas" / "iso20022",
            port=port,
            max_body=max_body,
            tls=tls,
            bank_a_cert=bank_a_cert,
            workers=workers,
        )
        + extra
    )
    return path


def sim_bank(
    receipts: Path,
    *,
    name: str = "sim",
    participant: str = "sim-bank",
    bic: str = "BBBBDEFFXXX",
    token_sha256: str | None = None,
    options: str = "",
    route: str | None = "default",
    match: str = "",
    **connector: float | int,
) -> str:
    """TOML (for write_config's `extra`) of a simulated bank: participant `participant` (`bic`; answers only unless
    `token_sha256` is given), connector `name` recording to `receipts`, and route `route` to it.

    `connector` adds connector settings (backoff_initial_s=0.05, concurrency=16, ...), `options` TOML lines to its
    options (rules, failures, status, ...), `match` TOML lines of route conditions (creditor_agent = "BBBB*", ...;
    none: the route takes everything). `route=None` writes no route (the caller writes its own, in its order).
    Several banks: concatenate the calls; their routes keep the order of the calls."""

    def lines(text: str) -> str:
        return text + "\n" if text and not text.endswith("\n") else text

    token = f'token_sha256 = "{token_sha256}"\n' if token_sha256 else ""
    settings = "".join(f"{key} = {value}\n" for key, value in connector.items())
    to_it = f'\n[[routes]]\nname = "{route}"\n{lines(match)}connector = "{name}"\n' if route else ""
    return f"""
[[participants]]
name = "{participant}"
bics = ["{bic}"]
{token}
[[connectors]]
name = "{name}"
kind = "simulated"
participant = "{participant}"
{settings}
[connectors.options]
receipts = "{receipts}"
{lines(options)}{to_it}"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@dataclass
class RunningDaemon:
    daemon: Daemon
    base_url: str
    config_path: Path

    def client(self, participant: str | None = "bank-a") -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {TOKENS[participant]}"} if participant else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    async def stop(self) -> None:
        """Stop as SIGTERM does (drain) and wait until the daemon has closed its journal."""
        self.daemon.request_stop()
        with trio.fail_after(30):
            await self.daemon.stopped.wait()


async def start_daemon(config_path: Path, nursery: trio.Nursery) -> RunningDaemon:
    """The daemon of `config_path`, in process in `nursery`, once it listens (on the port the config names, or 0)."""
    d = Daemon(load_config(config_path))
    with trio.fail_after(60):  # spawning worker (and signer) processes: this only bounds a hang
        running = await nursery.start(d.run)
    host, port = running.http_addresses[0][:2]
    return RunningDaemon(d, f"http://{host}:{port}", config_path)


@pytest.fixture
async def daemon(config_file: Path, nursery: trio.Nursery) -> AsyncIterator[RunningDaemon]:
    running = await start_daemon(config_file, nursery)
    yield running
    await running.stop()


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    config_path: Path
    log_path: Path

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_daemon_process(
    config_path: Path, log_path: Path, timeout: float = 20, *, new_session: bool = False
) -> DaemonProcess:
    """Start `switchd run` as a real process and wait for its 'ready' log line, which names the port.

    `new_session`: in a process group of its own (with its worker processes), as systemd runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [str(SWITCHD), "run", "--config", str(config_path)],
            stdout=log,
            stderr=log,
            env=env,
            cwd=REPO,
            start_new_session=new_session,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"ready in [0-9.]+s: http on ([0-9.]+):(\d+)", log_path.read_text(errors="replace"))
        if m:
            return DaemonProcess(proc, f"http://{m.group(1)}:{m.group(2)}", config_path, log_path)
        if proc.poll() is not None:
            raise RuntimeError(f"switchd exited with {proc.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"switchd did not become ready in {timeout}s:\n{log_path.read_text()}")


@pytest.fixture
def daemon_process(config_file: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    dp = start_daemon_process(config_file, tmp_path / "switchd.log")
    yield dp
    if dp.proc.poll() is None:
        dp.signal(signal.SIGTERM)
        try:
            dp.wait(30)
        except subprocess.TimeoutExpired:
            dp.proc.kill()
            dp.wait(5)


def switchctl(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWITCHCTL), "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
