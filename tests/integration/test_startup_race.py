"""Two nodes over one PostgreSQL booting at the same moment both look for the postmaster
mailbox, both find none, both create it: the one that loses must start all the same. It
exited with `cannot start: mailbox postmaster already exists` (status 2), which made the
node-kill test fail whenever its two nodes raced. The loser is reproduced here exactly:
the lookup answers "none" while the mailbox exists."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.core.config import load_config
from relay.core.runtime import POSTMASTER, Runtime


def test_a_node_that_loses_the_postmaster_race_starts(instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `instance`: on PostgreSQL under MSSANTE_TEST_STORE=postgresql, where two nodes race
    config = load_config(instance / "relay.toml")

    async def scenario() -> Any:
        store = await Store.open(config.store_url, MasterKey.load(config.master_key))
        if await store.get_mailbox(POSTMASTER) is None:
            await store.create_mailbox(POSTMASTER, MailboxState.ACTIVE)  # the other node won
        await store.close()
        real = Store.get_mailbox

        async def not_yet(self: Store, ins: str) -> Any:
            return None if ins == POSTMASTER else await real(self, ins)

        monkeypatch.setattr(Store, "get_mailbox", not_yet)
        rt = await Runtime.start(config)
        monkeypatch.setattr(Store, "get_mailbox", real)
        try:
            return await rt.store.get_mailbox(POSTMASTER)
        finally:
            await rt.store.close()
            assert rt.pools is not None
            rt.pools.shutdown()

    postmaster = asyncio.run(scenario())
    assert postmaster is not None and postmaster.state is MailboxState.ACTIVE
