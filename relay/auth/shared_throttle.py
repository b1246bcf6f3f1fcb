"""The login throttle's failure counts shared by the nodes of one PostgreSQL (issue 14):
without it a guesser spreading attempts over N nodes would get N times the free
failures and N times shorter delays.

What is shared, what stays per node:
- Shared (database `budgets` rows, keys hashed: no INS nor address in clear): the
  failure count and the time of the last failure of each key, (account, source
  network) and source network. Before each attempt the node takes in the shared counts
  (`pull`: one indexed read), after a failed check it adds its failure (`push`: one
  upsert per key), after a success it clears the (account, source) key (`clear`).
- Per node: attempts in flight, the one-at-a-time lock per account and the waiting
  line (policy/throttle.py `busy`). Sharing them would cost a database round trip per
  admission and a lock held across nodes during argon2; the bound they give becomes N
  x `hash_threads` checks in flight per network for N nodes, while the budget of
  failures, which is what limits guessing, stays one.
- On SQLite (one node) nothing is written: the in-memory ledger is the whole truth.
A database that cannot be read or written leaves the node on its own ledger (logged):
the throttle degrades to per node, it never refuses the owner because of it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import structlog

from mailbox_store.budgets import budget_key
from mailbox_store.store import Store
from policy.throttle import Ledger

log = structlog.get_logger("relay.auth")


class SharedFailures:
    def __init__(self, store: Store, forget_after: float, clock: Callable[[], float]):
        self.store = store
        self.forget_after = dt.timedelta(seconds=forget_after)
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.store.shared_budgets

    @staticmethod
    def _keys(pair: str | None, source: str) -> dict[str, tuple[str, bool]]:
        """{hashed key: (the ledger's key, whether it is the source's)}."""
        keys = {budget_key("login-src", source): (source, True)}
        if pair is not None:
            keys[budget_key("login-pair", pair)] = (pair, False)
        return keys

    async def pull(self, pairs: Ledger, sources: Ledger, pair: str | None, source: str) -> None:
        if not self.enabled:
            return
        keys = self._keys(pair, source)
        try:
            shared = await self.store.failures_of(list(keys), self.forget_after)
        except Exception as e:
            log.error("auth.shared_unavailable", error=type(e).__name__)
            return
        now, wall = self.clock(), dt.datetime.now(dt.timezone.utc)
        for hashed, (failures, last) in shared.items():
            key, is_source = keys[hashed]
            (sources if is_source else pairs).merge(key, failures, now - (wall - last).total_seconds(), now)

    async def push(self, pair: str | None, source: str) -> None:
        if not self.enabled:
            return
        try:
            await self.store.failures_add(list(self._keys(pair, source)), self.forget_after)
        except Exception as e:
            log.error("auth.shared_unavailable", error=type(e).__name__)

    async def clear(self, pair: str | None) -> None:
        if not self.enabled or pair is None:
            return
        try:
            await self.store.failures_clear(budget_key("login-pair", pair))
        except Exception as e:
            log.error("auth.shared_unavailable", error=type(e).__name__)
