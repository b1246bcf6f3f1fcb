"""Reads run whole in a worker thread on a synchronous connection (the webmail's hot
reads: mailbox_store/pages.py, thread.py; IMAP's: mailbox_store/imapreads.py).

Why: through the async driver every statement costs several hops between the event
loop and the driver's thread (cursor, execute, fetch, close, and BEGIN and ROLLBACK per
connection), each a GIL hand-over; a webmail page of five statements spent more of
the loop's time in those hops than in SQLite (measured with py-spy under
bench/web_load.py). A function given to `Reader.run` does all its statements in one
hop, the way the writer applies a batch (writer.py). The pool is small and bounded:
requests beyond it wait their turn, they do not open connections.

Two priorities over the same threads: `run` for reads that open messages (a 25 MB blob
decrypted in the thread), `run_light` for the few indexed rows every page reads (who
is logged in, a conversation's members, the reply rules). A waiting light read is
taken before any waiting message read. Under bench/web_load.py the Messagerie list,
whose only read is the session's identity, waited in one FIFO behind the downloads'
and conversations' message reads: its latency was their queue's. (A lane of its own,
one thread, was measured worse: three of a conversation's reads are light, and that
one thread became the queue.) Light reads are a fraction of the pages' reads, so the
message reads are delayed, never starved.

Each thread keeps its connection for the Reader's life, and a hop is one read
transaction on it: BEGIN on the DBAPI connection (SQLite; PostgreSQL's driver opens its
transaction at the first statement), the function, ROLLBACK. Connecting, closing and
BEGIN through SQLAlchemy's event at every hop were 8.5% of the daemon's GIL time under
imaptest's stress (issue 12 §3, py-spy --gil). A function may mix `conn.execute` and
prepared statements (prepared.py): both run in that one transaction, so one snapshot
(SQLite WAL). An engine that BEGINs in its own `begin` event gets its hops begun by
SQLAlchemy instead, never twice. A connection that was lost (invalidated by the error
that said so) is closed, and the next hop of that thread connects again.
"""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from mailbox_store.prepared import driver_sql

R = TypeVar("R")
READ_THREADS = 4
LIGHT, MESSAGE, STOP = 0, 1, 2  # priorities: lower first


class _Workers:
    """Threads taking jobs lowest priority first, then in arrival order."""

    def __init__(self, threads: int, name: str, on_exit: Callable[[], None] = lambda: None):
        self._on_exit = on_exit
        self._jobs: queue.PriorityQueue[tuple[int, int, Future[Any] | None, Callable[[], Any] | None]] = \
            queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, job: Callable[[], R]) -> "Future[R]":
        if self._closed:
            raise RuntimeError("the store's reader is closed")
        done: Future[R] = Future()
        self._jobs.put((priority, next(self._order), done, job))
        return done

    def _work(self) -> None:
        while True:
            _, _, done, job = self._jobs.get()
            if done is None or job is None:
                self._on_exit()
                return
            if not done.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as e:  # handed to the awaiting coroutine
                done.set_exception(e)
            else:
                done.set_result(result)

    def shutdown(self) -> None:
        """Every job already queued runs, then the threads end (STOP sorts last)."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put((STOP, next(self._order), None, None))
        for t in self._threads:
            t.join()


class Reader:
    def __init__(self, engine: Engine, threads: int = READ_THREADS):
        """engine: its pool must hold `threads` connections (each thread keeps one)."""
        self._engine = engine
        self._begin = "BEGIN" if engine.dialect.name == "sqlite" else None
        self._local = threading.local()
        self._workers = _Workers(threads, "store-reader", on_exit=self._drop)

    @property
    def engine(self) -> Engine:
        return self._engine

    async def run(self, fn: Callable[[Connection], R]) -> R:
        """fn(conn) in a worker thread, inside one read transaction (one snapshot)."""
        return await asyncio.wrap_future(self._workers.submit(MESSAGE, lambda: self._call(fn)))

    async def run_light(self, fn: Callable[[Connection], R]) -> R:
        """Like run, for a read of a few indexed rows that opens no message: taken
        before the message reads waiting for a thread."""
        return await asyncio.wrap_future(self._workers.submit(LIGHT, lambda: self._call(fn)))

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.invalidated or conn.closed):
            self._drop()
            conn = None
        if conn is None:
            conn = self._engine.connect()
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn: Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a lost connection's close: nothing left to release
                pass

    def _call(self, fn: Callable[[Connection], R]) -> R:
        conn = self._connection()
        try:
            if self._engine.dispatch.begin:
                conn.begin()  # the engine's own event BEGINs (store.py's writer pragmas)
            elif self._begin is not None:
                driver_sql(conn, self._begin)
            return fn(conn)
        finally:
            self._end(conn)

    def _end(self, conn: Connection) -> None:
        """ROLLBACK: a read changed nothing. A connection that cannot is dropped."""
        try:
            if conn.invalidated:
                self._drop()
            elif conn.in_transaction():
                conn.rollback()
            else:
                dbapi_conn = conn.connection.dbapi_connection
                assert dbapi_conn is not None
                dbapi_conn.rollback()
        except Exception:  # the hop's own error (if any) is what the caller gets
            try:
                conn.invalidate()  # never reset nor pooled again
            except Exception:  # already gone
                pass
            self._drop()

    def close(self) -> None:
        self._workers.shutdown()
        self._engine.dispose()
