"""Budgets shared by every node of one database (issue 14 §2): a fixed-window counter
per key, taken in one atomic statement, so N nodes together allow what one node would.

Implementation notes:
- `take` is one INSERT … ON CONFLICT DO UPDATE … WHERE (PostgreSQL and SQLite ≥ 3.24
  alike): the row is created, reset when its window has ended, or counted up while
  under the limit; no row comes back when the budget is spent. The row lock of the
  upsert serialises two nodes taking the same key at once.
- A fixed window, not a sliding one: at a window's edge a key may get up to twice its
  limit within `window` seconds; the bound stays (what RFC 3834 §2 asks of automatic
  replies), and a key costs one short row.
- Times come from the nodes' clocks (UTC): nodes must run NTP, as for TLS and logs.
- Keys carry no personal data in clear: callers hash addresses (`budget_key`).
- A unit taken for something that must commit (the TEST acknowledgement) is taken in
  that commit (`BudgetClaim`, run by PreparedOutgoing.apply): a rolled-back commit (451)
  gives it back with everything else.
- Rows whose window has ended count for nothing; `prune` deletes them in bounded
  batches (relay/core/budgetprune.py runs it hourly).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from mailbox_store.feed import Change
from mailbox_store.models import Budget, utc
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from mailbox_store.writer import Writer


def budget_key(kind: str, value: str) -> str:
    """A key for `value` (an address) that does not store it in clear."""
    return f"{kind}:{hashlib.sha256(value.lower().encode()).hexdigest()[:40]}"


def take(conn: Connection, key: str, limit: int, window: dt.timedelta, now: dt.datetime) -> bool:
    """One unit of `key`'s budget (`limit` per `window`); False when spent."""
    if limit <= 0:
        return False
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(Budget).values(key=key, window_start=now, used=1)
    # the stored window ended: started at or before now - window (a bound value, so
    # both engines compare two timestamps, no interval arithmetic in SQL)
    ended = Budget.window_start <= now - window
    stmt = stmt.on_conflict_do_update(
        index_elements=[Budget.key],
        set_={"used": case((ended, literal(1)), else_=Budget.used + 1),
              "window_start": case((ended, stmt.excluded.window_start), else_=Budget.window_start)},
        where=ended | (Budget.used < limit)).returning(Budget.used)
    return conn.execute(stmt).first() is not None


def count_failure(conn: Connection, key: str, now: dt.datetime, forget_after: dt.timedelta) -> None:
    """One more login failure of `key` (used: the count, window_start: the last one);
    a key quiet for `forget_after` starts again from one (policy/throttle.py)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(Budget).values(key=key, window_start=now, used=1)
    quiet = Budget.window_start <= now - forget_after
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[Budget.key],
        set_={"used": case((quiet, literal(1)), else_=Budget.used + 1), "window_start": stmt.excluded.window_start}))


def has_room(row: tuple[dt.datetime, int] | None, limit: int, window: dt.timedelta, now: dt.datetime) -> bool:
    """Whether `take` would grant a unit now, from the key's row (window_start, used)."""
    if limit <= 0:
        return False
    return row is None or utc(row[0]) <= now - window or row[1] < limit


@dataclass
class BudgetClaim:
    """One unit of a budget, taken inside the transaction of what it pays for (the TEST
    acknowledgement: PreparedOutgoing.apply), so a rolled-back commit takes nothing.
    `granted`: what the last run found (None before any), read once committed."""

    key: str
    limit: int
    window: dt.timedelta
    granted: bool | None = None

    def take(self, conn: Connection) -> bool:
        self.granted = take(conn, self.key, self.limit, self.window, dt.datetime.now(dt.timezone.utc))
        return self.granted


def prune(conn: Connection, before: dt.datetime, max_rows: int) -> int:
    """Delete up to `max_rows` rows whose window started before `before` (ended: they
    count for nothing); returns how many."""
    keys = select(Budget.key).where(Budget.window_start < before).order_by(Budget.window_start).limit(max_rows)
    return conn.execute(delete(Budget).where(Budget.key.in_(keys.scalar_subquery()))).rowcount


class BudgetOps(Repository):
    writer: "Writer"
    engine: "AsyncEngine"

    @property
    def shared_budgets(self) -> bool:
        """Whether other nodes may share this database (PostgreSQL): budgets that must
        hold across nodes are then taken here, not only counted in memory."""
        return self.engine.dialect.name != "sqlite"

    async def budget_take(self, key: str, limit: int, window: dt.timedelta, now: dt.datetime | None = None) -> bool:
        when = now or dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[bool, list[Change]]:
            return take(conn, key, limit, window, when), []

        return await self.writer.submit(job)

    async def budget_has_room(self, key: str, limit: int, window: dt.timedelta) -> bool:
        """Whether `budget_take` would grant a unit now (reads; takes nothing)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Budget.window_start, Budget.used).where(Budget.key == key))).first()
        return has_room(None if row is None else (row[0], row[1]), limit, window, dt.datetime.now(dt.timezone.utc))

    async def budgets_prune(self, older_than: dt.timedelta, max_rows: int) -> int:
        """One bounded batch of ended windows deleted (one writer job)."""
        before = dt.datetime.now(dt.timezone.utc) - older_than

        def job(conn: Connection) -> tuple[int, list[Change]]:
            return prune(conn, before, max_rows), []

        return await self.writer.submit(job)

    async def failures_add(self, keys: list[str], forget_after: dt.timedelta) -> None:
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            for key in sorted(keys):  # one lock order on every node
                count_failure(conn, key, when, forget_after)
            return None, []

        await self.writer.submit(job)

    async def failures_clear(self, key: str) -> None:
        def job(conn: Connection) -> tuple[None, list[Change]]:
            conn.execute(delete(Budget).where(Budget.key == key))
            return None, []

        await self.writer.submit(job)

    async def failures_of(self, keys: list[str], forget_after: dt.timedelta) -> dict[str, tuple[int, dt.datetime]]:
        """{key: (failures, time of the last one)} for the keys failed within `forget_after`."""
        since = dt.datetime.now(dt.timezone.utc) - forget_after
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(Budget.key, Budget.used, Budget.window_start).where(
                Budget.key.in_(keys), Budget.window_start > since))).all()
        return {r.key: (r.used, utc(r.window_start)) for r in rows}
