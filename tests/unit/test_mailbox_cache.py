"""mailbox_store.cache.MailboxCache: concurrent misses of one INS share one lookup
(issue 12: 10,000 IMAP sessions of 100 mailboxes ran the connection pool dry)."""
from __future__ import annotations

import asyncio

from mailbox_store.cache import MailboxCache


async def test_concurrent_misses_share_one_lookup_and_forget_starts_afresh() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def lookup(ins: str) -> str:
        calls.append(ins)
        await gate.wait()
        return f"info {ins} {calls.count(ins)}"

    cache: MailboxCache[str] = MailboxCache(lookup, ttl=60)
    waiters = [asyncio.ensure_future(cache.get("A")) for _ in range(100)] + [asyncio.ensure_future(cache.get("B"))]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one caller giving up leaves the lookup to the others
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert calls == ["A", "B"]
    assert set(results[:99]) == {"info A 1"} and results[99] == "info B 1"
    assert await cache.get("A") == "info A 1" and len(calls) == 2  # cached now
    cache.forget("A")
    assert await cache.get("A") == "info A 2" and calls == ["A", "B", "A"]


async def test_a_failed_lookup_fails_its_waiters_and_is_not_kept() -> None:
    attempts = 0

    async def lookup(ins: str) -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if attempts == 1:
            raise OSError("database down")
        return "ok"

    cache: MailboxCache[str] = MailboxCache(lookup, ttl=60)
    results = await asyncio.gather(cache.get("A"), cache.get("A"), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results) and attempts == 1
    assert await cache.get("A") == "ok" and attempts == 2
