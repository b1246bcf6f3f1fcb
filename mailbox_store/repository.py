"""The store's repositories and the core they share (issue 15 §5).

`Store` (store.py) is composed of repositories, one per kind of record: folders,
messages, documents, conversations, the outbound queue, pages, professional access,
threads, \\Recent, queue leases, budgets. Each is an object holding the one shared
`StoreCore`; none holds a reference to the Store or to another repository, so no
module of the store imports store.py back.

Implementation notes (invariants a newcomer must not break):
- One core per Store: one async engine for reads, one `Reader` (sync reads in its
  threads), one `Writer` (every write; group commit, writer.py), one change feed, one
  `Keyring`. A repository never opens its own engine nor writes outside the writer, so
  durability and "publish after commit" stay the writer's (writer.py).
- One keyring: every mailbox's keys are unwrapped from the master key once and kept in
  the bounded LRU (keycache.py), whichever repository asks first; a second keyring would
  double the unwrapped keys in memory and the unwrap queries.
- `executor` is set once the daemon's pools exist (relay/core/runtime.py): read it at
  each use, never copy it at construction.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from sqlalchemy.ext.asyncio import AsyncEngine

    from mailbox_store.core import StoreCore
    from mailbox_store.reader import Reader
    from mailbox_store.writer import Writer

T = TypeVar("T")


class Repository:
    """A repository of the Store: its methods reach the database, the keys and the
    feed through the shared core only."""

    def __init__(self, core: StoreCore):
        self.core = core

    @property
    def engine(self) -> AsyncEngine:
        return self.core.engine

    @property
    def reader(self) -> Reader:
        return self.core.reader

    @property
    def writer(self) -> Writer:
        return self.core.writer

    @property
    def node_id(self) -> str:
        return self.core.node_id

    async def _data_key(self, mailbox_id: int, ins: str) -> AESGCM:
        return (await self.core.keyring.keys(mailbox_id, ins)).aead

    async def _dedupe_key(self, mailbox_id: int, ins: str) -> bytes:
        return (await self.core.keyring.keys(mailbox_id, ins)).dedupe

    async def _thread_hmac_key(self, mailbox_id: int, ins: str) -> bytes:
        return (await self.core.keyring.keys(mailbox_id, ins)).thread

    async def off_loop(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        return await self.core.off_loop(size, fn, *args)

    async def audit(self, mailbox_id: int, actor: str, action: str, detail: str = "", source: str = "") -> None:
        await self.core.audit(mailbox_id, actor, action, detail, source)
