"""The outbound queue claimed under a lease (mailbox_store/queue_claim.py, issue 14 §2):
on SQLite (one node) and on a real PostgreSQL shared by two nodes."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from mailbox_store.outbound import Recipient
from mailbox_store.store import Store, sqlite_url
from tests.nodes.helpers import INS, open_node
from tests.pg import PgServer

LEASE = dt.timedelta(seconds=60)


async def _fill(store: Store, n: int, domains: tuple[str, ...] = ("a.mssante.fr",)) -> None:
    mb = await store.get_mailbox(INS) or await store.create_mailbox(INS)
    for i in range(n):
        d = domains[i % len(domains)]
        await store.enqueue(mb, b"Subject: x\r\n\r\nbody\r\n", f"{INS}@patient.mssante.fr",
                            [Recipient(f"dr{i}@{d}", d)], "reply", dt.timedelta(days=1))


@pytest.mark.asyncio
async def test_claimed_entries_wait_for_the_lease_then_go_to_another_node(tmp_path: Path) -> None:
    store = await open_node(sqlite_url(tmp_path / "r.db"))
    try:
        await _fill(store, 3)
        now = dt.datetime.now(dt.timezone.utc)
        first = await store.queue_claim(LEASE, 10, now=now)
        assert len(first) == 3
        # held: nothing to claim for anyone before the lease ends
        store._node_id = "other-node"
        assert await store.queue_claim(LEASE, 10, now=now + LEASE / 2) == []
        # the first node was killed: after its lease, another node takes the entries
        again = await store.queue_claim(LEASE, 10, now=now + LEASE + dt.timedelta(seconds=1))
        assert sorted(i.id for i in again) == sorted(i.id for i in first)
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_release_counts_the_attempt_and_only_by_the_holder(tmp_path: Path) -> None:
    store = await open_node(sqlite_url(tmp_path / "r.db"))
    try:
        await _fill(store, 1)
        now = dt.datetime.now(dt.timezone.utc)
        [item] = await store.queue_claim(LEASE, 10, now=now)
        mine = store.node_id
        store._node_id = "not-the-holder"
        assert not await store.queue_release(item.id, "451 later", now + dt.timedelta(seconds=5))
        store._node_id = mine
        assert await store.queue_release(item.id, "451 later", now + dt.timedelta(seconds=5))
        after = await store.queue_item(item.id)
        assert after.attempts == 1 and after.last_error == "451 later"
        # lease ended with the release: due again at its next attempt time, for anyone
        store._node_id = "another"
        assert await store.queue_claim(LEASE, 10, now=now + dt.timedelta(seconds=1)) == []
        assert [i.id for i in await store.queue_claim(LEASE, 10, now=now + dt.timedelta(seconds=6))] == [item.id]
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_claim_respects_slots_and_per_domain_limit(tmp_path: Path) -> None:
    store = await open_node(sqlite_url(tmp_path / "r.db"))
    try:
        await _fill(store, 12, ("a.mssante.fr", "b.mssante.fr", "c.mssante.fr"))
        got = await store.queue_claim(LEASE, 5, per_domain=2, busy={"a.mssante.fr": 1})
        by_domain = sorted(i.domain for i in got)
        assert by_domain == ["a.mssante.fr", "b.mssante.fr", "b.mssante.fr", "c.mssante.fr", "c.mssante.fr"]
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_two_nodes_on_postgresql_never_claim_the_same_entry(pg: PgServer, pg_db: str) -> None:
    a, b = await open_node(pg.url(pg_db)), await open_node(pg.url(pg_db))
    try:
        await _fill(a, 200, ("a.mssante.fr", "b.mssante.fr"))
        claimed: dict[str, list[str]] = {"a": [], "b": []}

        async def drain(name: str, node: Store) -> None:
            for _ in range(200):  # bounded: 200 entries, at least one per round until empty
                got = await node.queue_claim(LEASE, 7)
                if not got:
                    return
                claimed[name] += [i.id for i in got]

        await asyncio.wait_for(asyncio.gather(drain("a", a), drain("b", b)), 120)
        assert len(claimed["a"]) + len(claimed["b"]) == 200
        assert not set(claimed["a"]) & set(claimed["b"])
        assert claimed["a"] and claimed["b"]  # both took a share
        # node a "killed" holding its entries: b gets them only after the lease
        later = dt.datetime.now(dt.timezone.utc) + LEASE + dt.timedelta(seconds=1)
        assert await b.queue_claim(LEASE, 500) == []
        taken_over = await b.queue_claim(LEASE, 500, now=later)
        assert set(claimed["a"]) <= {i.id for i in taken_over}
        # and a's late deferral no longer touches what b now holds
        assert not await a.queue_release(claimed["a"][0], "451", later)
    finally:
        await a.close()
        await b.close()
