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
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from mailbox_store.prepared import driver_sql

R = TypeVar("R")
READ_THREADS = 4
LIGHT, MESSAGE = 0, 1  # priorities: lower first


class _Workers:
    """Threads taking light jobs first, then message jobs, each kind in arrival order.

    A thread that finishes a job takes the next one without sleeping; a sleeping
    thread is woken (a token on a SimpleQueue) only when a job arrives and no token is
    already on its way to one. Under imaptest's stress, waking a thread per job (the
    PriorityQueue's Condition, then a token per job) was a tenth of the event loop's GIL
    time (py-spy --gil, issue 12 §3): on a busy machine the futex wake-up of a thread
    can deschedule the loop while it holds the GIL; with the threads already busy,
    nothing needs waking."""

    def __init__(self, threads: int, name: str, on_exit: Callable[[], None] = lambda: None):
        self._on_exit = on_exit
        self._queues: tuple[collections.deque[Callable[[], None]], ...] = (collections.deque(), collections.deque())
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._sleeping = 0  # threads waiting for a token
        self._woken = 0  # tokens put and not yet taken
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, job: Callable[[], None]) -> None:
        """job runs in a thread; it reports its own outcome (Reader._submit)."""
        with self._lock:  # with close's: a job is either refused or run before the threads end
            if self._closed:
                raise RuntimeError("the store's reader is closed")
            self._queues[priority].append(job)
            wake = self._sleeping > self._woken
            if wake:
                self._woken += 1
        if wake:
            self._tokens.put(None)

    def _next(self) -> Callable[[], None] | None:
        light, message = self._queues
        try:
            return light.popleft() if light else message.popleft()
        except IndexError:
            return None

    def _work(self) -> None:
        light, message = self._queues
        while True:
            job = self._next()
            if job is not None:
                job()
                continue
            with self._lock:
                # checked again under the lock: a job appended before this saw no sleeper
                if light or message:
                    continue
                if self._closed:  # nothing left: every job queued before close has run
                    break
                self._sleeping += 1
            self._tokens.get()
            with self._lock:
                self._sleeping -= 1
                self._woken -= 1
        self._on_exit()

    def shutdown(self) -> None:
        """Every job already queued runs, then the threads end."""
        with self._lock:
            self._closed = True
            self._woken += len(self._threads)
        for _ in self._threads:
            self._tokens.put(None)
        for t in self._threads:
            t.join()


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the awaiting coroutine was cancelled meanwhile
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


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
        return await self._submit(MESSAGE, fn)

    async def run_light(self, fn: Callable[[Connection], R]) -> R:
        """Like run, for a read of a few indexed rows that opens no message: taken
        before the message reads waiting for a thread."""
        return await self._submit(LIGHT, fn)

    def _submit(self, priority: int, fn: Callable[[Connection], R]) -> asyncio.Future[R]:
        """The hop's outcome comes back on an asyncio future, set from the thread with
        call_soon_threadsafe (no concurrent Future and its Condition in between); a
        hop whose caller was cancelled before it started does not run."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()

        def job() -> None:
            if fut.cancelled():
                return
            result: Any = None
            error: BaseException | None = None
            try:
                result = self._call(fn)
            except BaseException as e:  # handed to the awaiting coroutine
                error = e
            try:
                loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        self._workers.submit(priority, job)
        return fut

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
