"""Read audits joined across sessions (issue 12 §3, DESIGN.md §4 "Durability and trace").

Every FETCH, SEARCH or SORT that decrypts message content appends a `message.read`
row. Submitting each as its own writer job (with its own future and task) made every
read a writer round trip of its own: while the writer was idle, one commit (one fsync)
per FETCH, and under load a batch full of them. Here the rows of every session wait
in one list; at most one writer job carrying them is in flight, and the rows queued
meanwhile leave with the next one, so a commit holds the reads of every session since
the previous one, inserted with one statement (audit.AuditJob.apply_group).

A command does not wait for its audit row to commit; `flush()` waits until every row
added so far is committed, and the IMAP server calls it when it stops, before the store
closes, so none is lost on a clean stop.

The rows held (queued, or in the job in flight) are bounded by `limit`: when the writer
falls that far behind, `add` waits until a job has committed and freed room, so the
reading sessions slow down to the writer's pace; a row is never dropped.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection

from mailbox_store.audit import AuditJob
from mailbox_store.feed import Change

if TYPE_CHECKING:
    from mailbox_store.writer import Writer

log = structlog.get_logger("mailbox_store.auditqueue")
MAX_ROWS_PER_JOB = 2_000  # rows in one INSERT: a burst leaves in several jobs, each bounded
MAX_HELD_ROWS = 5 * MAX_ROWS_PER_JOB  # rows queued or in flight (a row is about 300 bytes)


class ReadAudits:
    def __init__(self, writer: Writer, limit: int = MAX_HELD_ROWS):
        self._writer = writer
        self._rows: list[AuditJob] = []
        self._task: asyncio.Task[None] | None = None
        self._limit = max(1, limit)
        self._held = 0  # rows queued or in the job in flight
        self._room = asyncio.Condition()
        self.jobs = 0  # writer jobs submitted (a test and bench/ figure)
        self.waits = 0  # adds that waited for room (a test figure)

    @property
    def held(self) -> int:
        return self._held

    async def add(self, mailbox_id: int, actor: str, action: str, detail: str, source: str) -> None:
        """Queue one row; it is committed with the next group, without a job of its own.
        Returns at once while fewer than `limit` rows are held, else once a job freed room."""
        if self._held >= self._limit:
            self.waits += 1
            async with self._room:
                await self._room.wait_for(lambda: self._held < self._limit)
        self._rows.append(AuditJob(mailbox_id, dt.datetime.now(dt.timezone.utc), actor, action, detail, source))
        self._held += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="read-audits")

    async def _drain(self) -> None:
        while self._rows:
            rows, self._rows = self._rows[:MAX_ROWS_PER_JOB], self._rows[MAX_ROWS_PER_JOB:]

            def job(conn: Connection, rows: list[AuditJob] = rows) -> tuple[Any, list[Change]]:
                AuditJob.apply_group(conn, rows)
                return None, []

            self.jobs += 1
            try:
                await self._writer.submit(job)
            except Exception as e:  # the store refused or is closing: say so, never raise into a session
                log.error("audit.failed", error=type(e).__name__, rows=len(rows))
            finally:
                self._held -= len(rows)
                async with self._room:
                    self._room.notify_all()

    async def flush(self) -> None:
        """Wait until every row added so far is committed (or failed, logged)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
