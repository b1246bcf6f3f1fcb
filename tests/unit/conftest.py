"""Shared fixtures of the unit tests.

`store`: an empty Store on the engine of the run (SQLite, or the private PostgreSQL of
MSSANTE_TEST_STORE=postgresql: tests/pg.py's `store_url`); a test file may define its own.

A development instance (`mssante-relay init`: PKI with RSA keys, trust list, master key,
relay.toml) is written once per run (it was once per module, ten of them): RSA key
generation is the slow part. Tests only read it.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from relay.ops.instance import init_instance


@pytest.fixture(scope="session")
def dev_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a freshly initialised instance (holds relay.toml). Tests must not modify it."""
    target = tmp_path_factory.mktemp("instance") / "inst"
    config = init_instance(target)
    assert config == target / "relay.toml"
    return target


@pytest.fixture
async def store(tmp_path: Path, store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url, MasterKey.generate(tmp_path / "k"))
    yield s
    await s.close()
