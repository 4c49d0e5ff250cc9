"""Directory connector: atomic, durable files on a real file system; no overwrite of earlier files; no partial file
under a final name after a failed write or a kill -9; temp files cleaned up."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

from adapters.local.directory import DirectoryConnector, DirectorySettings
from switchd.connectors import Delivery, DeliveryFailed
from switchd.iso.outbound import set_possible_duplicate
from tests.builders import REPO, pacs008


def delivery(payload: bytes, *, outbox_id: str = "O1", attempt: int = 1) -> Delivery:
    return Delivery(
        outbox_id=outbox_id,
        message_id="M1",
        message_type="pacs.008.001.08",
        msg_id="MSG-1",
        payload=payload,
        attempt=attempt,
        possible_duplicate=attempt > 1,
    )


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_writes_the_exact_bytes_under_the_outbox_id(tmp_path):
    conn = DirectoryConnector("drop", DirectorySettings(tmp_path))
    payload = pacs008()
    assert await conn.deliver(delivery(payload, outbox_id="O1")) == "O1.xml"
    assert (tmp_path / "O1.xml").read_bytes() == payload
    assert stat.S_IMODE((tmp_path / "O1.xml").stat().st_mode) == 0o640
    assert listing(tmp_path) == ["O1.xml"]  # no temp file left
    await conn.aclose()


async def test_outbox_ids_as_the_daemon_makes_them_are_file_names(tmp_path):
    """The outbox names part N of message M as "M.N": the daemon's real ids must be deliverable."""
    conn = DirectoryConnector("drop", DirectorySettings(tmp_path))
    assert await conn.deliver(delivery(b"<x/>", outbox_id="M01a20859db422836f4b16f24d6afc593.1")) == (
        "M01a20859db422836f4b16f24d6afc593.1.xml"
    )
    await conn.aclose()


async def test_retry_and_replay_never_overwrite(tmp_path):
    conn = DirectoryConnector("drop", DirectorySettings(tmp_path))
    first = pacs008(msg_id="MSG-1")
    assert await conn.deliver(delivery(first, attempt=1)) == "O1.xml"
    # the same bytes again (a retry after an uncertain attempt): already there, nothing new written
    assert await conn.deliver(delivery(first, attempt=2)) == "O1.xml"
    assert listing(tmp_path) == ["O1.xml"]
    # other bytes (a replay marked possible duplicate): the first file stays, the copy gets the attempt number
    replay = set_possible_duplicate(first)
    assert replay != first
    assert await conn.deliver(delivery(replay, attempt=3)) == "O1.3.xml"
    assert (tmp_path / "O1.xml").read_bytes() == first
    assert (tmp_path / "O1.3.xml").read_bytes() == replay
    # yet other bytes under the same attempt number: a content-named copy, still nothing overwritten
    third = first + b"\n"
    name = await conn.deliver(delivery(third, attempt=3))
    assert name is not None and name.startswith("O1.3.") and name.endswith(".xml") and name != "O1.3.xml"
    assert (tmp_path / name).read_bytes() == third
    assert await conn.deliver(delivery(third, attempt=3)) == name  # and it is stable
    assert listing(tmp_path) == sorted(["O1.xml", "O1.3.xml", name])


async def test_concurrent_deliveries_of_one_entry_leave_one_file(tmp_path):
    conn = DirectoryConnector("drop", DirectorySettings(tmp_path))
    payload = pacs008()
    names: list[str | None] = []

    async def one(attempt: int) -> None:
        names.append(await conn.deliver(delivery(payload, attempt=attempt)))

    async with trio.open_nursery() as nursery:
        for attempt in range(1, 21):
            nursery.start_soon(one, attempt)
    assert names == ["O1.xml"] * 20
    assert listing(tmp_path) == ["O1.xml"]


@pytest.mark.parametrize("outbox_id", ["../escape", "a/b", ".hidden", "", "x" * 200, "O1\x00", "a..b"])
async def test_unsafe_outbox_id_is_refused_for_good(tmp_path, outbox_id):
    conn = DirectoryConnector("drop", DirectorySettings(tmp_path / "d", create=True))
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery(b"<x/>", outbox_id=outbox_id))
    assert info.value.retryable is False
    assert not (tmp_path / "escape").exists()


async def test_missing_directory_is_retryable_unless_created(tmp_path):
    target = tmp_path / "share" / "in"
    conn = DirectoryConnector("drop", DirectorySettings(target))
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery(b"<x/>"))
    assert info.value.retryable is True
    assert not target.exists()  # not created behind the operator's back
    target.mkdir(parents=True)  # the share is mounted again: the retry succeeds
    assert await conn.deliver(delivery(b"<x/>")) == "O1.xml"

    made = tmp_path / "made" / "here"
    conn2 = DirectoryConnector("drop2", DirectorySettings(made, create=True))
    assert await conn2.deliver(delivery(b"<y/>")) == "O1.xml"
    assert (made / "O1.xml").read_bytes() == b"<y/>"


async def test_path_that_is_a_file_is_retryable(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    conn = DirectoryConnector("drop", DirectorySettings(not_a_dir, create=True))
    with pytest.raises(DeliveryFailed) as info:
        await conn.deliver(delivery(b"<x/>"))
    assert info.value.retryable is True


async def test_leftover_temp_files_are_swept_before_the_first_write(tmp_path):
    (tmp_path / ".O7.xml.k3j2h1.tmp").write_bytes(b"<half")
    (tmp_path / ".keep").write_bytes(b"")  # not ours: stays
    (tmp_path / "O5.xml").write_bytes(b"<done/>")  # a delivered file: stays
    conn = DirectoryConnector("drop", DirectorySettings(tmp_path))
    await conn.deliver(delivery(b"<x/>", outbox_id="O8"))
    assert listing(tmp_path) == [".keep", "O5.xml", "O8.xml"]


# A child process that writes through the connector, for failures that must not hit the test process itself.
CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    import trio
    from adapters.local.directory import DirectoryConnector, DirectorySettings
    from switchd.connectors import Delivery, DeliveryFailed

    directory, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so an over-limit write fails with EFBIG, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.RLIM_INFINITY))

    def payload(i):
        head = f"<p id='O{i}'>".encode()
        return head + b"x" * (size - len(head) - 4) + b"</p>"

    async def main():
        conn = DirectoryConnector("drop", DirectorySettings(__import__("pathlib").Path(directory)))
        i = 0
        while True:
            i += 1
            try:
                name = await conn.deliver(Delivery(f"O{i}", "M", "pacs.008.001.08", "MSG", payload(i), 1, False))
                print(json.dumps({"ok": name}), flush=True)
            except DeliveryFailed as exc:
                print(json.dumps({"failed": exc.reason, "retryable": exc.retryable}), flush=True)
                return
            if mode == "fsize":
                return

    trio.run(main)
    """
)


def test_a_write_that_fails_midway_leaves_nothing(tmp_path):
    # The file size limit makes the kernel refuse the write half way (EFBIG): a real partial write.
    drop = tmp_path / "drop"
    drop.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(drop), "fsize", str(256 * 1024)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr.decode()
    assert b'"retryable": true' in child.stdout, child.stdout
    assert listing(drop) == []  # no final file, and the partial temp file is gone


def test_kill_9_mid_write_never_exposes_a_partial_file(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    size = 4 * 1024 * 1024
    log = tmp_path / "child.log"
    with log.open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(drop), "loop", str(size)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 60
    try:
        # kill once a few files are done, while the child is busy writing the next ones
        while len([n for n in os.listdir(drop) if not n.startswith(".")]) < 3:
            assert child.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the child wrote nothing"
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finals = [n for n in os.listdir(drop) if not n.startswith(".")]
    assert len(finals) >= 3
    for name in finals:
        data = (drop / name).read_bytes()
        stem = name.removesuffix(".xml")
        assert len(data) == size and data.startswith(f"<p id='{stem}'>".encode()) and data.endswith(b"</p>")

    # the next connector on this folder sweeps whatever temp file the kill left, and carries on
    async def next_run() -> None:
        conn = DirectoryConnector("drop", DirectorySettings(drop))
        await conn.deliver(delivery(b"<after/>", outbox_id="AFTER"))

    trio.run(next_run)
    assert [n for n in os.listdir(drop) if n.startswith(".")] == []
    assert (drop / "AFTER.xml").read_bytes() == b"<after/>"
