"""Budgets shared by the nodes (mailbox_store/budgets.py, issue 14 §2): the counter on
SQLite, and two nodes on a real PostgreSQL taking the same key at once."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from mailbox_store.budgets import budget_key
from mailbox_store.store import sqlite_url
from tests.nodes.helpers import open_node
from tests.pg import PgServer

HOUR = dt.timedelta(hours=1)


@pytest.mark.asyncio
async def test_a_budget_is_spent_then_renewed_with_its_window(tmp_path: Path) -> None:
    store = await open_node(sqlite_url(tmp_path / "r.db"))
    try:
        t0 = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.timezone.utc)
        key = budget_key("autoreply", "Dr.Martin@test-operator.mssante.fr")
        assert "martin" not in key.lower()
        got = [await store.budget_take(key, 3, HOUR, now=t0 + dt.timedelta(minutes=i)) for i in range(5)]
        assert got == [True, True, True, False, False]
        # another key has its own budget
        assert await store.budget_take(budget_key("autoreply", "x@y.fr"), 3, HOUR, now=t0)
        # the window started at t0: it ends at t0 + 1 h, and the count starts again
        assert not await store.budget_take(key, 3, HOUR, now=t0 + HOUR - dt.timedelta(seconds=1))
        assert await store.budget_take(key, 3, HOUR, now=t0 + HOUR)
        assert await store.budget_take(key, 3, HOUR, now=t0 + HOUR)
        assert await store.budget_take(key, 3, HOUR, now=t0 + HOUR)
        assert not await store.budget_take(key, 3, HOUR, now=t0 + HOUR)
        assert not await store.budget_take(key, 0, HOUR, now=t0 + 5 * HOUR)
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_two_nodes_share_one_budget(pg: PgServer, pg_db: str) -> None:
    a, b = await open_node(pg.url(pg_db)), await open_node(pg.url(pg_db))
    try:
        key = budget_key("autoreply", "dr.martin@test-operator.mssante.fr")
        now = dt.datetime.now(dt.timezone.utc)
        results = await asyncio.wait_for(asyncio.gather(
            *(node.budget_take(key, 10, HOUR, now=now) for _ in range(25) for node in (a, b))), 120)
        assert results.count(True) == 10  # not 10 per node
        later = now + HOUR
        assert await b.budget_take(key, 10, HOUR, now=later)
    finally:
        await a.close()
        await b.close()

