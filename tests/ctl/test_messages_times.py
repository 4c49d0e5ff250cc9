"""`switchctl messages --since/--until` read the operator's time as a time, whatever its ISO 8601 spelling, against a
real journal whose messages straddle the bounds; a text that is no time is refused (exit 2), never an empty table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from switchd.config import load_config
from switchd.ctl.main import build_parser
from switchd.journal import open_journal
from tests.conftest import switchctl, write_config
from tests.journal.factory import make_record

# received_at as the daemon stores it (RFC 3339 UTC, microseconds, Z), around 2026-11-23 15:05 UTC.
RECEIVED = {
    "M1": "2026-11-22T23:59:59.999999Z",
    "M2": "2026-11-23T15:04:59.999999Z",
    "M3": "2026-11-23T15:05:00.000000Z",
    "M4": "2026-11-23T15:05:00.500000Z",
    "M5": "2026-11-23T16:05:00.000000Z",
    "M6": "2026-11-24T00:00:00.000000Z",
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose journal holds RECEIVED (written by the journal itself; the tests here are not async)."""
    path = write_config(tmp_path)
    journal_path = load_config(path).journal_path
    journal_path.parent.mkdir(parents=True)

    async def fill() -> None:
        async with open_journal(journal_path) as journal:
            for mid, at in RECEIVED.items():
                await journal.commit_inbound(make_record(mid, msg_id=f"MSG-{mid}", received_at=at))

    trio.run(fill)
    return path


def listed(config: Path, *args: str) -> list[str]:
    """The ids `switchctl --json messages ARGS` lists, sorted."""
    done = switchctl(config, "--json", "messages", *args)
    assert done.returncode == 0, done.stderr
    return sorted(row["id"] for row in json.loads(done.stdout))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # A space instead of T, no offset: UTC. Raw text compared " " < "T" and took all of the 23rd.
        (["--since", "2026-11-23 15:05:00"], ["M3", "M4", "M5", "M6"]),
        # The same instant with an offset. Raw text compared "16:05" with the stored UTC hours.
        (["--since", "2026-11-23T16:05:00+01:00"], ["M3", "M4", "M5", "M6"]),
        (["--since", "2026-11-23T15:05:00Z"], ["M3", "M4", "M5", "M6"]),
        # Until is exclusive; raw "...15:05:00Z" sorted after the stored "...15:05:00.000000Z" and took M3.
        (["--until", "2026-11-23T15:05:00Z"], ["M1", "M2"]),
        (["--until", "2026-11-23T10:05:00-05:00"], ["M1", "M2"]),
        (["--since", "2026-11-23T15:05:00.5Z", "--until", "2026-11-23 16:05"], ["M4"]),
        # A date alone is its midnight (UTC).
        (["--since", "2026-11-23", "--until", "2026-11-24"], ["M2", "M3", "M4", "M5"]),
        (["--since", "2026-11-24"], ["M6"]),
    ],
)
def test_since_and_until_are_read_as_times(config: Path, args: list[str], expected: list[str]) -> None:
    assert listed(config, *args) == expected


@pytest.mark.parametrize(
    ("option", "text"),
    [("--since", "yesterday"), ("--until", "2026-13-01"), ("--since", "2026-11-23T25:00Z"), ("--until", "")],
)
def test_a_text_that_is_no_time_is_refused_in_one_line(config: Path, option: str, text: str) -> None:
    done = switchctl(config, "messages", option, text)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"switchctl messages: {option}: {text!r} is not a time: give ISO 8601, e.g. 2026-11-23, '2026-11-23 15:05'"
        " or 2026-11-23T15:05:00+01:00 (without Z or an offset: UTC)"
    ]


def test_help_says_a_time_without_offset_is_utc(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["messages", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--since T received at or after T (ISO 8601:" in help_text
    assert "no Z or offset: UTC" in help_text


def test_replay_refuses_a_text_that_is_no_time_in_one_line(config: Path) -> None:
    done = switchctl(config, "replay", "--since", "yesterday", "--reason", "test")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].startswith("switchctl replay: --since: 'yesterday' is not a time")
    assert "Traceback" not in done.stderr
