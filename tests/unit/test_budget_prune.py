"""mailbox_store/budgets.py housekeeping and in-commit claims, on the run's engine: ended
windows are deleted in bounded batches (relay/core/budgetprune.py runs them hourly), a
claim taken in a transaction that rolls back takes nothing."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from mailbox_store.budgets import BudgetClaim, budget_key
from mailbox_store.models import Budget
from mailbox_store.store import Store
from relay.core.budgetprune import BudgetPruner, longest_window
from relay.core.config import load_config

HOUR = dt.timedelta(hours=1)


async def _keys(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set((await conn.execute(select(Budget.key))).scalars())


async def test_ended_windows_are_pruned_in_bounded_batches(store: Store) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(5):  # windows started 3 h ago: ended
        assert await store.budget_take(f"old:{i}", 3, HOUR, now=now - 3 * HOUR)
    assert await store.budget_take("fresh", 3, HOUR, now=now - dt.timedelta(minutes=5))
    pruner = BudgetPruner(store, 2 * HOUR, max_rows=3)
    assert await pruner.run_once() == 3  # one bounded batch
    assert len(await _keys(store)) == 3
    assert await pruner.run_once() == 2
    assert await _keys(store) == {"fresh"}  # a window still running is kept
    assert await pruner.run_once() == 0


async def test_has_room_reads_without_taking(store: Store) -> None:
    key = budget_key("autoreply", "dr.martin@test-operator.mssante.fr")
    assert await store.budget_has_room(key, 1, HOUR)
    assert await store.budget_has_room(key, 1, HOUR)  # nothing taken by asking
    assert await store.budget_take(key, 1, HOUR)
    assert not await store.budget_has_room(key, 1, HOUR)
    assert not await store.budget_has_room("other", 0, HOUR)


async def test_a_claim_in_a_rolled_back_transaction_takes_nothing(store: Store) -> None:
    claim = BudgetClaim("autoreply:x", 1, HOUR)

    def failing(conn):  # type: ignore[no-untyped-def]
        assert claim.take(conn)
        raise RuntimeError("the commit fails after the claim")

    with pytest.raises(RuntimeError):
        await store.writer.submit(failing)
    assert await _keys(store) == set()
    assert await store.budget_has_room(claim.key, 1, HOUR)

    def ok(conn):  # type: ignore[no-untyped-def]
        return claim.take(conn), []

    assert await store.writer.submit(ok) is True and claim.granted is True
    assert await store.writer.submit(ok) is False and claim.granted is False  # spent


def test_the_pruner_keeps_the_longest_window(dev_instance) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config(dev_instance / "relay.toml")
    assert cfg.delivery is not None
    assert longest_window(cfg) == dt.timedelta(seconds=max(cfg.notify_window, cfg.auth.forget_after,
                                                           cfg.delivery.auto_reply_window))
