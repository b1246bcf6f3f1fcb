"""Read audits joined across sessions (issue 12 §3, DESIGN.md §4 "Durability and trace").

Every FETCH, SEARCH or SORT that decrypts message content appends a `message.read`
row. Submitting each as its own writer job (with its own future and task) made every
read a writer round trip of its own: while the writer was idle, one commit (one fsync)
per FETCH, and under load a batch full of them. Here the rows of every session wait
in one list; at most one writer job carrying them is in flight, and the rows queued
meanwhile leave with the next one, so a commit holds the reads of every session since
the previous one, inserted with one statement (audit.AuditJob.apply_group).

No command waits for its audit row (as before); `flush()` waits until every row added
so far is committed, and the IMAP server calls it when it stops, before the store
closes, so none is lost on a clean stop.
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


class ReadAudits:
    def __init__(self, writer: Writer):
        self._writer = writer
        self._rows: list[AuditJob] = []
        self._task: asyncio.Task[None] | None = None
        self.jobs = 0  # writer jobs submitted (a test and bench/ figure)

    def add(self, mailbox_id: int, actor: str, action: str, detail: str, source: str) -> None:
        """Queue one row; it is committed with the next group, without a job of its own."""
        self._rows.append(AuditJob(mailbox_id, dt.datetime.now(dt.timezone.utc), actor, action, detail, source))
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

    async def flush(self) -> None:
        """Wait until every row added so far is committed (or failed, logged)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
