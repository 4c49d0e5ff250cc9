"""Fixtures for the journal tests: a started journal on a real SQLite file in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchd.journal import Journal, open_journal


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
async def journal(db_path: Path) -> AsyncIterator[Journal]:
    async with open_journal(db_path) as j:
        yield j
