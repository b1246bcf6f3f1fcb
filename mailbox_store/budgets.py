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
"""
from __future__ import annotations

import datetime as dt
import hashlib
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


def forget_before(conn: Connection, before: dt.datetime) -> int:
    """Drop rows whose window started before `before` (housekeeping)."""
    return conn.execute(delete(Budget).where(Budget.window_start < before)).rowcount


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
