"""The single write path with group commit (DESIGN.md §6).

Implementation notes (invariants a newcomer must not break):
- Every write of the daemon goes through `Writer.submit`. Jobs queued while a commit
  is in flight are applied together in the next transaction, so N concurrent
  deliveries cost one fsync, not N, and no two writers of this process ever compete
  for SQLite's lock ("database is locked" cannot happen between our own sessions).
- A batch runs whole in one dedicated thread on a synchronous connection of the same
  database: one hop from the event loop per batch instead of one per statement (the
  async driver's per-statement hop made the store 4.6x slower: 339 against 1,567
  deliveries/s measured on this machine). The event loop never waits on SQLite.
- Each job runs inside its own SAVEPOINT: a job that fails is rolled back alone and
  its caller gets the exception; the rest of the group commits. A job alone in its
  batch (the common case of an IMAP STORE or EXPUNGE) runs without one: its failure
  rolls back a transaction that holds nothing else.
- Jobs of one kind that know how to be applied together (a `GroupJob`, e.g. deliveries)
  are applied in one go: a few statements per batch instead of a few per job. Under
  load the writer thread gets the GIL back after every statement only when the event
  loop lets go of it, so statements, not rows, are what a batch costs (measured: 2.7 ms
  per delivery applied one by one while the MX is busy). If the grouped apply fails,
  the same jobs are applied one by one in their own savepoints, so one bad job still
  fails alone.
- A caller's future is resolved only after COMMIT returned, i.e. after the WAL was
  fsynced (synchronous=FULL, see store.py): the MX says 250 only then.
- Changes are published on the feed after the commit, never before.
- The writer times itself (`WriterTimes`, exported on /metrics by relay/daemon/admin.py):
  its thread's wall time in transactions, the part of it on the CPU and in COMMIT (the
  WAL's fsync on SQLite), and the jobs' wait before their transaction began. Wall time
  that is neither CPU nor COMMIT is the thread waiting: for the GIL back after each
  statement, or for a core (under imaptest's stress: 5.8-7.2 ms of wall per batch, 1.9-2.5
  on the CPU, 1.4-1.7 in COMMIT of which the fsync is 0.3, the writer busy 75-79% of the
  time, issue 12 §3; a 0.5 ms GIL switch interval did not shorten it). The kernel tells
  the two apart (`thread_id`, read by relay/daemon/threadstat.py): time in the run queue
  is waiting for a core, a voluntary switch a wait for the GIL, the disk or work. Under
  the same stress on two cores: 24% of the time on a core, 21% in the run queue, 31
  voluntary and 6 involuntary switches per transaction.
- The writer's thread keeps its connection from batch to batch (connecting and
  closing per batch was SQLAlchemy pool work on the GIL, issue 12 §3); after a failed
  batch it is closed, and the next batch connects again, never reusing a connection
  left in an unknown state.
- With `imap.processes` > 1, the IMAP worker processes have writers of their own over
  the same SQLite file (relay/daemon/imapworkers.py). Each holds `shared_lock` (an
  flock on `<db>.write-lock`) from BEGIN to COMMIT: the kernel hands the lock to the
  next writer the moment it is released, where SQLite's busy handler polls with
  sleeps of 1 to 100 ms. Group commit stays per process.
- Another process (the CLI) may hold the lock for a moment: BEGIN IMMEDIATE waits for
  it up to busy_timeout, and a batch that still meets "database is locked" is retried
  whole, a bounded number of times, before its callers get the error. On PostgreSQL
  the same holds for a deadlock or serialization failure (another node's transaction),
  whether BEGIN, COMMIT or a job's own statement met it: it is the transaction's
  failure, never a job's. A job may therefore run more than once: only what its last
  run returns counts, and it keeps nothing else (no list outside it appended to).
"""
from __future__ import annotations

import asyncio
import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import OperationalError

from mailbox_store.feed import Change, Feed
from mailbox_store.prepared import driver_sql

log = structlog.get_logger("mailbox_store.writer")
R = TypeVar("R")
# A job runs synchronously on the writer's connection and returns its result and the
# changes to publish once committed.
Job = Callable[[Connection], tuple[Any, list[Change]]]


class GroupJob:
    """A job that can also be applied together with others of its class: subclasses
    implement `__call__` (alone) and `apply_group` (several, one result per job)."""

    def __call__(self, conn: Connection) -> tuple[Any, list[Change]]:
        return self.apply_group(conn, [self])[0]

    @classmethod
    def apply_group(cls, conn: Connection, jobs: list[Any]) -> list[tuple[Any, list[Change]]]:
        raise NotImplementedError


@dataclass
class _Pending:
    job: Job
    future: asyncio.Future[Any]
    queued: float = field(default_factory=time.perf_counter)  # when it was submitted
    result: Any = None
    error: BaseException | None = None
    changes: list[Change] = field(default_factory=list)


class WriterClosed(RuntimeError):
    pass


@dataclass
class WriterTimes:
    """Seconds the writer has spent since it started, cumulative (Prometheus counters)."""

    busy: float = 0.0  # its thread's wall time inside transactions (BEGIN to COMMIT)
    cpu: float = 0.0  # of which on the CPU (the thread's own CPU time)
    commit: float = 0.0  # of which in COMMIT (on SQLite, the WAL's fsync)
    queued: float = 0.0  # summed over jobs: from submit to the start of their transaction


class Writer:
    def __init__(self, engine: Engine, feed: Feed, max_batch: int = 64, lock_retries: int = 5):
        self._engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer",
                                          initializer=self._started)
        self._feed = feed
        self._max_batch = max_batch
        self._lock_retries = lock_retries
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._conn: Connection | None = None  # the writer thread's, kept across batches
        self.batches = 0
        self.jobs = 0
        self.times = WriterTimes()
        self.thread_id: int | None = None  # its thread's, for the kernel's figures (relay/daemon/admin.py)
        # run in the transaction, after the jobs, with the changes it will publish
        # (PostgreSQL: NOTIFY to the other nodes, mailbox_store/nodefeed.py)
        self.before_commit: Callable[[Connection, list[Change]], None] | None = None
        # an open file whose flock the writers of several processes take in turn, from
        # BEGIN to COMMIT (imap.processes > 1; None: this process writes alone)
        self.shared_lock: int | None = None
        # run in the writer's thread after COMMIT, while it still holds shared_lock, with
        # the changes it will publish: the other processes hear them in commit order
        # (mailbox_store/procfeed.py)
        self.after_commit: Callable[[list[Change]], None] | None = None

    def _started(self) -> None:
        self.thread_id = threading.get_native_id()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-writer")

    async def submit(self, job: Job) -> Any:
        if self._closing or self._task is None:
            raise WriterClosed("the store is closing")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(job, fut))
        return await fut

    async def close(self) -> None:
        """Commit everything already submitted, then stop."""
        if self._task is None:
            return
        self._closing = True
        self._queue.put_nowait(None)
        await self._task
        self._task = None
        await asyncio.get_running_loop().run_in_executor(self._thread, self._drop)
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._commit(batch)

    def _apply(self, conn: Connection, batch: list[_Pending]) -> None:
        groups: dict[type[GroupJob], list[_Pending]] = {}
        singles: list[_Pending] = []
        for p in batch:
            p.error, p.result, p.changes = None, None, []
            if isinstance(p.job, GroupJob):
                groups.setdefault(type(p.job), []).append(p)
            else:
                singles.append(p)
        for kind, members in groups.items():
            if len(members) == 1:
                singles.append(members[0])
                continue
            try:
                with _savepoint(conn):
                    outcomes = kind.apply_group(conn, [p.job for p in members])
            except Exception as e:  # find the culprit: apply them one by one below
                if _conflict(e):
                    raise
                singles.extend(members)
                continue
            for p, (result, changes) in zip(members, outcomes, strict=True):
                p.result, p.changes = result, changes
        for p in singles:
            try:
                with _savepoint(conn):
                    p.result, p.changes = p.job(conn)
            except Exception as e:  # the job's own failure: rolled back to its savepoint
                if _conflict(e):  # the transaction's (another node's lock): the batch is retried
                    raise
                p.error = e

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.invalidated or self._conn.closed:
            self._drop()
            self._conn = self._engine.connect().execution_options(sqlite_immediate=True)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a lost connection's close: nothing left to release
                pass

    def _transaction(self, batch: list[_Pending]) -> None:
        lock = self.shared_lock
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other processes' writers: waits without the GIL
        times, started, cpu = self.times, time.perf_counter(), time.thread_time()
        times.queued += sum(started - p.queued for p in batch)
        try:
            self._transact(batch)
            if self.after_commit is not None:
                self.after_commit([c for p in batch if p.error is None for c in p.changes])
        finally:
            times.busy += time.perf_counter() - started
            times.cpu += time.thread_time() - cpu
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _transact(self, batch: list[_Pending]) -> None:
        conn = self._connection()
        try:
            if len(batch) == 1 and not isinstance(batch[0].job, GroupJob):
                self._alone(conn, batch[0])
            else:
                with conn.begin() as trans:  # rolled back if anything below raises
                    self._apply(conn, batch)
                    if self.before_commit is not None:
                        self.before_commit(conn, [c for p in batch if p.error is None for c in p.changes])
                    self._commit_timed(trans)
        except BaseException:
            self._drop()  # whatever its state (a failed BEGIN, COMMIT, a lost server): a fresh one next
            raise
        if conn.in_transaction():  # a job that left SQLAlchemy's transaction open (it never should)
            self._drop()

    def _commit_timed(self, trans: RootTransaction) -> None:
        started = time.perf_counter()
        try:
            trans.commit()
        finally:
            self.times.commit += time.perf_counter() - started

    def _alone(self, conn: Connection, p: _Pending) -> None:
        """A job alone in its group needs no savepoint (two statements fewer per
        commit, issue 12 §3): its own failure rolls the whole transaction back. The
        before-commit hook (the other nodes' NOTIFY, nodefeed.py) runs as for a group."""
        p.error, p.result, p.changes = None, None, []
        trans = conn.begin()
        try:
            p.result, p.changes = p.job(conn)
            if self.before_commit is not None:
                self.before_commit(conn, p.changes)
        except Exception as e:
            trans.rollback()
            if _conflict(e):  # the transaction's, not the job's: the batch is retried (_commit)
                raise
            p.result, p.changes, p.error = None, [], e
            return
        self._commit_timed(trans)

    async def _commit(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(self._lock_retries + 1):
            try:
                await loop.run_in_executor(self._thread, self._transaction, batch)
                break
            except OperationalError as e:
                if _retryable(e) and attempt < self._lock_retries:
                    log.warning("store.locked_retry", attempt=attempt + 1, jobs=len(batch))
                    await asyncio.sleep(0.05 * 2 ** attempt)
                    continue
                self._fail(batch, e)
                return
            except Exception as e:
                self._fail(batch, e)
                return
        self.batches += 1
        self.jobs += len(batch)
        changes: list[Change] = []
        for p in batch:
            if p.future.done():
                continue
            if p.error is not None:
                p.future.set_exception(p.error)
            else:
                p.future.set_result(p.result)
                changes.extend(p.changes)
        if changes:
            self._feed.publish(changes)

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        log.error("store.commit_failed", error=type(error).__name__, jobs=len(batch))
        for p in batch:
            if not p.future.done():
                p.future.set_exception(error)


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """A job's SAVEPOINT (SQL standard; SQLite and PostgreSQL alike), on the DBAPI
    cursor: SQLAlchemy's begin_nested ran each of its three statements through its whole
    execute path, 4% of the daemon's GIL time under imaptest's stress (issue 12 §3). No job
    opens savepoints of its own, so one name serves: each is released before the next."""
    driver_sql(conn, "SAVEPOINT writer_job")
    try:
        yield
    except BaseException:
        driver_sql(conn, "ROLLBACK TO SAVEPOINT writer_job")
        driver_sql(conn, "RELEASE SAVEPOINT writer_job")
        raise
    driver_sql(conn, "RELEASE SAVEPOINT writer_job")


# PostgreSQL's transaction-rollback class (SQLSTATE 40001 serialization failure, 40P01
# deadlock between nodes locking folder rows): the whole batch is retried, like SQLite's lock
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})


def _retryable(e: OperationalError) -> bool:
    return "locked" in str(e) or getattr(e.orig, "sqlstate", None) in _RETRY_SQLSTATES


def _conflict(e: BaseException) -> bool:
    """A statement of a job met another transaction (SQLite's lock, a deadlock or a
    serialization failure between PostgreSQL nodes): the whole transaction is lost, and
    the batch is retried, rather than its jobs failing as if they were wrong."""
    return isinstance(e, OperationalError) and _retryable(e)
