"""mailbox_store/cache.py: RCPT lookups renewed ahead in bulk, within the ttl promise (issue 15);
concurrent misses of one INS share one lookup (issue 12: 10,000 IMAP sessions of 100
mailboxes ran the connection pool dry)."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Collection

from mailbox_store.cache import MailboxCache
from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from policy.recipients import MailboxState

INS_A = "279035121518989"
INS_B = "185052A00412368"


class Backing:
    """A table of states, with counters of the single and bulk queries asked."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {INS_A: "active", INS_B: "active"}
        self.single = 0
        self.bulk: list[set[str]] = []
        self.gate: asyncio.Event | None = None

    async def one(self, ins: str) -> str | None:
        self.single += 1
        await asyncio.sleep(0)
        return self.rows.get(ins)

    async def many(self, keys: Collection[str]) -> dict[str, str]:
        self.bulk.append(set(keys))
        snapshot = {k: self.rows[k] for k in keys if k in self.rows}
        if self.gate is not None:
            await self.gate.wait()
        return snapshot


async def test_a_recipient_read_again_and_again_is_renewed_in_bulk_never_missed() -> None:
    b = Backing()
    cache = MailboxCache(b.one, ttl=0.6, lookup_many=b.many)
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            assert await cache.get(INS_A) == "active"
            assert await cache.get(INS_B) == "active"
            await asyncio.sleep(0.01)
        # one miss each at the start; afterwards only renewals, both keys in one query
        assert b.single == 2
        assert len(b.bulk) >= 2
        assert {INS_A, INS_B} in b.bulk
    finally:
        await cache.close()


async def test_a_change_made_elsewhere_is_seen_within_the_ttl() -> None:
    b = Backing()
    ttl = 0.2
    cache = MailboxCache(b.one, ttl=ttl, lookup_many=b.many)
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            await cache.get(INS_A)
            await asyncio.sleep(0.01)
        b.rows[INS_A] = "opposed"  # committed by another process: no forget() here
        changed = time.monotonic()
        while time.monotonic() < changed + ttl:  # still renewed meanwhile
            await cache.get(INS_A)
            await asyncio.sleep(0.01)
        # every entry valid now was read after the change, however late the loop ran
        assert await cache.get(INS_A) == "opposed"
    finally:
        await cache.close()


async def test_a_recipient_asked_less_often_than_once_a_ttl_is_still_kept() -> None:
    b = Backing()
    cache = MailboxCache(b.one, ttl=0.4, lookup_many=b.many)
    try:
        for _ in range(4):
            assert await cache.get(INS_A) == "active"
            await asyncio.sleep(0.6)  # longer than the ttl, shorter than keep (4 ttl)
        assert b.single == 1
    finally:
        await cache.close()


async def test_a_mailbox_not_asked_for_within_keep_is_no_longer_renewed() -> None:
    b = Backing()
    cache = MailboxCache(b.one, ttl=0.1, lookup_many=b.many)
    try:
        await cache.get(INS_A)
        await asyncio.sleep(0.8)  # keep is 0.4 s: renewed a few times, then left to expire
        renewed = len(b.bulk)
        assert renewed >= 1
        await asyncio.sleep(0.3)
        assert len(b.bulk) == renewed and cache._renewal is not None and cache._renewal.done()
        await cache.get(INS_A)
        assert b.single == 2
    finally:
        await cache.close()


async def test_a_forget_during_a_renewal_drops_its_answer() -> None:
    b = Backing()
    cache = MailboxCache(b.one, ttl=0.2, lookup_many=b.many)
    try:
        b.gate = asyncio.Event()
        await cache.get(INS_A)  # a miss; the renewal at half-ttl waits at the gate
        await asyncio.sleep(0.15)
        assert b.bulk == [{INS_A}]
        b.rows[INS_A] = "closed"  # changed through this store: the store forgets it
        cache.forget(INS_A)
        b.gate.set()  # the renewal answers "active", read before the change
        await asyncio.sleep(0.01)
        assert await cache.get(INS_A) == "closed"
        assert b.single == 2
    finally:
        await cache.close()


async def test_a_failed_renewal_leaves_entries_to_expire() -> None:
    b = Backing()

    async def broken(keys: Collection[str]) -> dict[str, str]:
        raise OSError("disk")

    cache = MailboxCache(b.one, ttl=0.1, lookup_many=broken)
    try:
        await cache.get(INS_A)
        await asyncio.sleep(0.06)
        assert await cache.get(INS_A) == "active"  # renewal fails in the background
        await asyncio.sleep(0.06)
        assert await cache.get(INS_A) == "active"
        assert b.single == 2  # expired, read again on its own
    finally:
        await cache.close()


async def test_store_sees_another_processs_change_within_the_ttl(store_url: str) -> None:
    """Two stores on one database stand for the daemon and the CLI (or another node)."""
    url, master = store_url, MasterKey(os.urandom(32))
    daemon = await Store.open(url, master, mailbox_cache_ttl=0.3)
    cli = await Store.open(url, master)
    try:
        await daemon.create_mailbox(INS_A, MailboxState.ACTIVE)
        await daemon.create_mailbox(INS_B, MailboxState.ACTIVE)
        end = time.monotonic() + 0.8
        while time.monotonic() < end:  # a hot recipient: kept by renewals
            assert (await daemon.cached_mailbox(INS_A)).state is MailboxState.ACTIVE  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
        assert daemon._cache.renewals >= 1
        await cli.set_state(INS_A, MailboxState.OPPOSED)
        await asyncio.sleep(0.35)
        got = await daemon.cached_mailbox(INS_A)
        assert got is not None and got.state is MailboxState.OPPOSED
        assert await daemon.mailboxes_by_ins([INS_A, INS_B, "100000000000000"]) == {
            INS_A: got, INS_B: await daemon.get_mailbox(INS_B)}
    finally:
        await cli.close()
        await daemon.close()


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
