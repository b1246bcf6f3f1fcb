"""Fixtures of the IMAP unit tests that drive a Session over a socket pair."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store, sqlite_url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(sqlite_url(tmp_path / "s.db"), MasterKey.generate(tmp_path / "k"))
    yield s
    await s.close()
