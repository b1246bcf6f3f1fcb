"""Issue 12 §3: a job alone in its batch runs without a SAVEPOINT (mailbox_store/writer.py);
its failure still leaves nothing behind, and grouped jobs still fail alone."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, event, text

from sqlalchemy.exc import OperationalError

from mailbox_store.feed import Feed
from mailbox_store.writer import Writer


@pytest.fixture
async def writer(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")

    # transactions as the store has them (store.py emits BEGIN IMMEDIATE): an explicit
    # BEGIN, so that a job's SAVEPOINT is nested in it (pysqlite's own handling would
    # make the first SAVEPOINT the transaction, and its RELEASE a COMMIT)
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER UNIQUE)"))
    w = Writer(engine, Feed())
    w.start()
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", seen)
    yield w, engine, statements
    await w.close()
    engine.dispose()


def insert(v: int) -> Any:
    def job(conn: Connection) -> tuple[int, list[Any]]:
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": v})
        if v < 0:
            raise ValueError("a job's own failure")
        return v, []
    return job


def values(engine: Any) -> list[int]:
    with engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(text("SELECT v FROM t")))


async def test_a_lone_job_commits_without_a_savepoint(writer: Any) -> None:
    w, engine, statements = writer
    assert await w.submit(insert(1)) == 1
    assert "SAVEPOINT" not in statements and "RELEASE" not in statements
    assert values(engine) == [1]


async def test_a_lone_job_that_fails_leaves_nothing(writer: Any) -> None:
    w, engine, _ = writer
    with pytest.raises(ValueError):
        await w.submit(insert(-5))  # its INSERT ran before it failed: rolled back
    assert values(engine) == []
    assert await w.submit(insert(2)) == 2  # the writer goes on
    assert values(engine) == [2]


async def test_jobs_batched_together_still_fail_alone(writer: Any) -> None:
    w, engine, statements = writer
    results = await asyncio.gather(w.submit(insert(3)), w.submit(insert(-1)), w.submit(insert(4)),
                                   return_exceptions=True)
    assert results[0] == 3 and isinstance(results[1], ValueError) and results[2] == 4
    assert values(engine) == [3, 4]


def conflicted_once(v: int, calls: list[int]) -> Any:
    """A job whose first run meets another transaction's lock (a deadlock between
    PostgreSQL nodes comes out the same way: an OperationalError the writer retries)."""
    def job(conn: Connection) -> tuple[int, list[Any]]:
        calls.append(v)
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": v})
        if calls.count(v) == 1:
            raise OperationalError("INSERT INTO t", {}, Exception("database is locked"))
        return v, []
    return job


async def test_a_job_that_meets_another_transaction_is_retried_not_failed(writer: Any) -> None:
    w, engine, _ = writer
    calls: list[int] = []
    assert await w.submit(conflicted_once(7, calls)) == 7  # alone in its batch
    assert calls == [7, 7] and values(engine) == [7]  # the first attempt was rolled back
    calls.clear()
    got = await asyncio.gather(w.submit(insert(8)), w.submit(conflicted_once(9, calls)), w.submit(insert(10)))
    assert got == [8, 9, 10]  # grouped: the whole batch again, every job once committed
    assert values(engine) == [7, 8, 9, 10]
