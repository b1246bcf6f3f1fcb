"""The login throttle's failures shared by the nodes (relay/auth/shared_throttle.py, issue 14):
a guesser who moves to another node keeps its count; the owner is never locked out.
On a real PostgreSQL, two stores as two nodes; and on SQLite nothing is shared."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

import relay.auth.login as auth_module
from mailbox_store.models import Budget
from mailbox_store.store import Store, sqlite_url
from policy.recipients import MailboxState
from relay.auth.login import Authenticator
from relay.core.config import AuthConfig
from tests.nodes.helpers import INS, MASTER, open_node
from tests.pg import PgServer

LIMITS = AuthConfig(failures_per_account_source=5, failures_per_source=20, first_delay=300.0,
                    failure_reply_delay=0)
STRANGER, OWNER = "127.0.0.9", "127.0.0.1"


@pytest.fixture(autouse=True)
def cheap_dummy_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_module, "_DUMMY_HASH", PasswordHasher(time_cost=1, memory_cost=8192).hash("x"))


def _auth(store: Store) -> Authenticator:
    return Authenticator(store, MASTER, "patient.mssante.fr", LIMITS, clock=time.monotonic)


@pytest.mark.asyncio
async def test_a_guesser_moving_to_another_node_keeps_its_count(pg: PgServer, pg_db: str) -> None:
    a, b = await open_node(pg.url(pg_db)), await open_node(pg.url(pg_db))
    on_a, on_b = _auth(a), _auth(b)
    try:
        await a.create_mailbox(INS, MailboxState.ACTIVE, PasswordHasher(time_cost=1, memory_cost=8192).hash("right"))
        first = [await on_a.login(INS, f"guess{i}", STRANGER) for i in range(5)]
        assert [r.reason for r in first] == ["bad_credentials"] * 5  # the free failures
        moved = await on_b.login(INS, "guess5", STRANGER)
        assert moved.reason == "throttled" and moved.retry_after > 0  # per node it was a first try
        assert on_b.password_checks == 0
        # the owner, from elsewhere, on either node
        assert (await on_b.login(INS, "right", OWNER)).ok
        assert (await on_a.login(INS, "right", OWNER)).ok
        async with a.engine.connect() as conn:  # keys are hashed: no INS, no address in clear
            keys = (await conn.execute(select(Budget.key))).scalars().all()
        assert keys and not any(INS in k or STRANGER in k for k in keys)
    finally:
        on_a.close()
        on_b.close()
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_one_node_on_sqlite_writes_nothing(tmp_path: Path) -> None:
    store = await open_node(sqlite_url(tmp_path / "r.db"))
    auth = _auth(store)
    try:
        await store.create_mailbox(INS, MailboxState.ACTIVE, PasswordHasher(time_cost=1, memory_cost=8192).hash("x1"))
        for i in range(3):
            assert (await auth.login(INS, f"guess{i}", STRANGER)).reason == "bad_credentials"
        async with store.engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(Budget))).scalar() == 0
    finally:
        auth.close()
        await store.close()


def test_ledger_merge_takes_the_larger_count_and_ignores_forgotten_failures() -> None:
    from policy.throttle import Budget as ThrottleBudget, Ledger

    ledger = Ledger(ThrottleBudget(free=2, first_delay=10, max_delay=100, forget_after=60))
    ledger.begin("k", 100)
    ledger.end("k", 100, failed=True)
    ledger.merge("k", 3, 105, now=106)  # three counted by all nodes, ours included
    assert ledger.failures("k", 106) == 3
    assert ledger.admit("k", 106).wait == pytest.approx(105 + 20 - 106)  # 2nd over budget: 20 s after 105
    ledger.merge("k", 1, 50, now=106)  # fewer, older: changes nothing
    assert ledger.failures("k", 106) == 3
    ledger.merge("other", 9, 40, now=106)  # quiet for forget_after: not taken in
    assert ledger.failures("other", 106) == 0
