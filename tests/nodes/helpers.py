"""Opening stores as separate nodes of one database, for the multi-node tests."""
from __future__ import annotations

import os

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store

MASTER = MasterKey(os.urandom(32))
INS = "279035121518989"


async def open_node(url: str) -> Store:
    """A store with its own engines, writer and feed: what a second `serve` has."""
    return await Store.open(url, MASTER)
