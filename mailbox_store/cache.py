"""A short-lived cache of mailbox lookups for the MX's RCPT checks.

Every RCPT needs the mailbox's state; asking the database each time cost ~20% of the
MX's event-loop time at 280 messages/s (a thread hop per lookup). Entries live `ttl`
seconds. Changes made through this process's store are seen at once (the store calls
`forget`); changes made by another process (the CLI, another node) are seen within
`ttl`. ttl = 0 disables the cache.

Misses of one INS at the same time share one lookup: 10,000 IMAP sessions of 100
mailboxes answering LOGOUT together asked the database 10,000 times and ran the
connection pool dry (issue 12).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from typing import Generic, TypeVar

T = TypeVar("T")


class MailboxCache(Generic[T]):
    def __init__(self, lookup: Callable[[str], Awaitable[T | None]], ttl: float = 1.0,
                 max_entries: int = 100_000):
        self._lookup = lookup
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, T | None]] = {}
        self._inflight: dict[str, asyncio.Future[T | None]] = {}

    async def get(self, ins: str) -> T | None:
        now = time.monotonic()
        hit = self._entries.get(ins)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(ins)
        if pending is not None:
            return await asyncio.shield(pending)  # a waiter's cancellation leaves the lookup alone
        task = asyncio.ensure_future(self._lookup(ins))
        self._inflight[ins] = task

        def settled(t: "asyncio.Future[T | None]") -> None:
            if self._inflight.get(ins) is not t:
                return  # forgotten meanwhile: its answer may predate the change
            del self._inflight[ins]
            if t.cancelled() or t.exception() is not None:
                return  # each waiter gets the error through its shield
            if self._ttl > 0:
                if len(self._entries) >= self._max:
                    self._entries.clear()  # bounded memory; refilled on demand
                self._entries[ins] = (now + self._ttl, t.result())

        task.add_done_callback(settled)
        # a caller's cancellation leaves the lookup (and its caching) to the others
        return await asyncio.shield(task)

    def forget(self, ins: str) -> None:
        self._entries.pop(ins, None)
        self._inflight.pop(ins, None)  # a lookup started before the change must not answer later ones
