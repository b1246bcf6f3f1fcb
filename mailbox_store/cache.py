"""A short-lived cache of mailbox lookups for the MX's RCPT checks.

Every RCPT needs the mailbox's state; asking the database each time cost ~20% of the
MX's event-loop time at 280 messages/s (a thread hop per lookup). Entries live `ttl`
seconds. Changes made through this process's store are seen at once (the store calls
`forget`); changes made by another process (the CLI, another node) are seen within
`ttl`. ttl = 0 disables the cache.

Misses of one INS at the same time share one lookup: 10,000 IMAP sessions of 100
mailboxes answering LOGOUT together asked the database 10,000 times and ran the
connection pool dry (issue 12).

Renewed ahead, in bulk (issue 15): with a 1 s ttl and 100 recipients each written to
about once a second, most RCPTs still missed, and each miss cost the async driver's
several hops (7.5% of the MX's samples in py-spy at 10 KB). When `lookup_many` is
given, every mailbox asked for in the last `keep` seconds (4 ttl) is renewed every
half-ttl by one task, with one query (one thread hop) for all of them: a recipient
that keeps receiving mail, even less often than once a ttl, never misses again, at the
price of one query per half-ttl for all of them. Mailboxes nobody asked for in `keep`
are no longer renewed and expire.

Why this keeps the ttl promise: an entry expires `ttl` after its query *started*,
whether it came from a miss or a renewal, so a change committed elsewhere at time T is
in every entry read after T + ttl. A `forget` that happens while a query is in flight
(a change through this store) discards that query's answer, which may predate it.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Generic, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("mailbox_store.cache")


class MailboxCache(Generic[T]):
    def __init__(self, lookup: Callable[[str], Awaitable[T | None]], ttl: float = 1.0,
                 max_entries: int = 100_000,
                 lookup_many: Callable[[Collection[str]], Awaitable[Mapping[str, T]]] | None = None):
        self._lookup = lookup
        self._lookup_many = lookup_many if ttl > 0 else None
        self._ttl = ttl
        self._keep = 4 * ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, T | None]] = {}
        self._inflight: dict[str, asyncio.Future[T | None]] = {}
        self._forgets = 0  # how many forget() calls so far: a query that saw it change is stale
        self._asked: dict[str, float] = {}  # mailbox -> when it was last asked for (renewed while recent)
        self._renewal: asyncio.Task[None] | None = None
        self.renewals = 0  # bulk queries run (tests, metrics)

    async def get(self, ins: str) -> T | None:
        now = time.monotonic()
        if self._lookup_many is not None:
            if len(self._asked) >= self._max and ins not in self._asked:
                self._asked.clear()  # bounded; refilled by the next RCPTs
            self._asked[ins] = now
            if self._renewal is None or self._renewal.done():
                self._renewal = asyncio.get_running_loop().create_task(self._renew(),
                                                                       name="mailbox-cache-renewal")
        hit = self._entries.get(ins)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(ins)
        if pending is not None:
            return await asyncio.shield(pending)  # a waiter's cancellation leaves the lookup alone
        task = asyncio.ensure_future(self._lookup(ins))
        self._inflight[ins] = task
        forgets = self._forgets

        def settled(t: "asyncio.Future[T | None]") -> None:
            if self._inflight.get(ins) is not t:
                return  # forgotten meanwhile: its answer may predate the change
            del self._inflight[ins]
            if t.cancelled() or t.exception() is not None:
                return  # each waiter gets the error through its shield
            if self._ttl > 0 and forgets == self._forgets:
                self._store(ins, now + self._ttl, t.result())

        task.add_done_callback(settled)
        # a caller's cancellation leaves the lookup (and its caching) to the others
        return await asyncio.shield(task)

    def forget(self, ins: str) -> None:
        self._forgets += 1
        self._entries.pop(ins, None)
        self._inflight.pop(ins, None)  # a lookup started before the change must not answer later ones

    async def close(self) -> None:
        """Stop the renewals (the store is closing)."""
        task, self._renewal = self._renewal, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _store(self, ins: str, expires: float, info: T | None) -> None:
        if len(self._entries) >= self._max and ins not in self._entries:
            self._entries.clear()  # bounded memory; refilled on demand
        self._entries[ins] = (expires, info)

    async def _renew(self) -> None:
        """Every half-ttl, the mailboxes asked for within `keep`, in one query; ends when
        none was (the next get starts it again)."""
        assert self._lookup_many is not None
        while True:
            await asyncio.sleep(self._ttl / 2)
            started, forgets = time.monotonic(), self._forgets
            self._asked = {k: t for k, t in self._asked.items() if started - t <= self._keep}
            if not self._asked:
                return
            keys = list(self._asked)
            try:
                found = await self._lookup_many(keys)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the entries just expire; a RCPT then asks on its own
                log.warning("mailbox_cache.renewal_failed", error=type(e).__name__, entries=len(keys))
                continue
            self.renewals += 1
            if forgets != self._forgets:
                continue  # a change went through this store meanwhile: the answer may predate it
            for ins in keys:
                self._store(ins, started + self._ttl, found.get(ins))
