"""The core the store's repositories share (repository.py says how they use it): the
engines, the single writer, the change feed, one keyring, the crypto executor."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from mailbox_store.audit import AuditJob
from mailbox_store.keycache import KeyCache, MailboxKeys
from mailbox_store.models import Mailbox
from mailbox_store.queue_claim import new_node_id
from mailbox_store.thread import derive_thread_key

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from mailbox_store.crypto import MasterKey
    from mailbox_store.feed import Feed
    from mailbox_store.reader import Reader
    from mailbox_store.writer import Writer

T = TypeVar("T")
# Whole messages and documents larger than this are sealed and opened in the store's
# executor (issue 15 §2): AES-GCM runs ~1 GB/s, a thread hop ~50 us.
INLINE_CRYPTO_MAX = 256 * 1024


class Keyring:
    """The mailboxes' keys: a data key is unwrapped with the master key (crypto.py) at
    its first use, then its derived keys are kept in the bounded LRU (keycache.py)."""

    def __init__(self, engine: AsyncEngine, master: MasterKey, cache_size: int):
        self.engine = engine
        self.master = master
        self.cache = KeyCache(cache_size)

    async def keys(self, mailbox_id: int, ins: str) -> MailboxKeys:
        keys = self.cache.get(mailbox_id)
        if keys is None:
            async with self.engine.connect() as conn:
                wrapped, key_id = (await conn.execute(select(Mailbox.data_key_wrapped, Mailbox.master_key_id)
                                                      .where(Mailbox.id == mailbox_id))).one()
            raw = self.master.unwrap(wrapped, ins, key_id)
            # a separate key for the dossier's dedupe HMAC (documents.py), never the
            # encryption key itself
            keys = MailboxKeys(AESGCM(raw), hmac.new(raw, b"mssante-relay/dossier-dedupe/v1", hashlib.sha256).digest(),
                               derive_thread_key(raw))
            self.cache.put(mailbox_id, keys)
        return keys


class StoreCore:
    """What every repository of one Store shares."""

    def __init__(self, engine: AsyncEngine, reader: Reader, writer: Writer, master: MasterKey, feed: Feed,
                 keyring: Keyring):
        self.engine = engine
        self.reader = reader
        self.writer = writer
        self.master = master
        self.feed = feed
        self.keyring = keyring
        # where whole messages and documents are sealed and opened (relay/core/pools.py's
        # crypto pool in the daemon; None: asyncio's default executor)
        self.executor: Executor | None = None
        self.node_id_value: str | None = None
        # \Recent: per folder id, its UIDVALIDITY and the highest UID already claimed, as
        # far as this process knows (recent.py); a deleted folder's entry goes (folders.py)
        self.recent_marks: dict[int, tuple[int, int]] = {}

    @property
    def node_id(self) -> str:
        """This process's name in queue leases and cross-node notices (queue_claim.py,
        nodefeed.py), drawn at first use."""
        if self.node_id_value is None:
            self.node_id_value = new_node_id()
        return self.node_id_value

    async def off_loop(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in the store's executor when `size` bytes make it slow (AES-GCM of
        a whole message or document: ~1 ms per MB), inline when small (a thread hop
        costs more than sealing 10 KB)."""
        if size <= INLINE_CRYPTO_MAX:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def audit(self, mailbox_id: int, actor: str, action: str, detail: str = "", source: str = "") -> None:
        """Append one event to the mailbox's audit log (committed before returning)."""
        await self.writer.submit(AuditJob(mailbox_id, dt.datetime.now(dt.timezone.utc), actor, action, detail, source))
