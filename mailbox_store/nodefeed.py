"""The change feed across nodes: PostgreSQL LISTEN/NOTIFY (issue 14 §2, DESIGN.md §6).

Implementation notes:
- The writer sends NOTIFY inside the transaction that makes the changes (`notify`, the
  Writer's `before_commit` hook): PostgreSQL delivers a notification only when its
  transaction commits, and then in commit order, so no node hears of a change that is
  not durable, and none misses one that is.
- The payload names the change (kind, mailbox id, folder, UID, modseq) and the node
  that made it; nothing else (no flags, no metadata, no health content: a NOTIFY is
  readable by every session of the database role). A node that hears a change
  republishes it on its own in-process feed marked `remote`, without the metadata:
  IMAP sessions then read what changed from the store (selected.py asks for a change
  "without metadata"), and node-local work started by a change (notifications) is
  left to the node that made it. A node ignores its own notifications.
- PostgreSQL caps a payload at 8,000 bytes: a batch's changes go in several NOTIFYs.
- Listening takes one dedicated asyncpg connection per node (LISTEN does not survive a
  pooled connection, nor PgBouncer's transaction mode: docs/scaling.md). When it drops,
  the listener reconnects with a bounded backoff; what was committed meanwhile reaches
  the sessions at their next command (NOOP, the end of IDLE), not as a wake-up.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy import Connection, make_url, text

from mailbox_store.feed import Change, Feed

log = structlog.get_logger("mailbox_store.nodefeed")

CHANNEL = "mssante_changes"
MAX_PAYLOAD = 7_000  # bytes; PostgreSQL's limit is 8,000
# what other nodes act on: sessions (message.*, folder.*), runners (queue.new: an entry
# to claim), the webmail's counts
FORWARDED = ("message.", "folder.", "queue.new", "dossier.")


def encode(node: str, changes: Iterable[Change]) -> list[str]:
    """The NOTIFY payloads of one transaction's changes."""
    payloads: list[str] = []
    batch: list[list[Any]] = []
    size = 0
    for c in changes:
        if not c.kind.startswith(FORWARDED):
            continue
        item = [c.kind, c.mailbox_id, c.folder, c.uid, c.modseq]
        n = len(json.dumps(item, ensure_ascii=True)) + 1
        if batch and size + n > MAX_PAYLOAD - 100:
            payloads.append(json.dumps({"n": node, "c": batch}, ensure_ascii=True))
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        payloads.append(json.dumps({"n": node, "c": batch}, ensure_ascii=True))
    return payloads


def decode(payload: str) -> tuple[str, list[Change]]:
    """(node, changes) of a payload; ValueError when it is not ours."""
    data = json.loads(payload)
    if not isinstance(data, dict) or not isinstance(data.get("n"), str) or not isinstance(data.get("c"), list):
        raise ValueError("not a change payload")
    changes = []
    for item in data["c"]:
        kind, mailbox_id, folder, uid, modseq = item
        if not (isinstance(kind, str) and isinstance(folder, str)
                and all(isinstance(v, int) for v in (mailbox_id, uid, modseq))):
            raise ValueError("bad change")
        changes.append(Change(kind, mailbox_id, folder, uid, modseq=modseq, remote=True))
    return data["n"], changes


def notifier(node: str) -> "Any":
    """The writer's before-commit hook: NOTIFY this transaction's changes."""
    def before_commit(conn: Connection, changes: list[Change]) -> None:
        for payload in encode(node, changes):
            conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
    return before_commit


def listen_dsn(store_url: str) -> str:
    """asyncpg's DSN of the store's database (same host, user, password, socket)."""
    return make_url(store_url).set(drivername="postgresql").render_as_string(hide_password=False)


class NodeFeedListener:
    """Republishes other nodes' changes on this node's feed."""

    def __init__(self, dsn: str, feed: Feed, node: str, password: str | None = None):
        self._dsn = dsn
        self._password = password  # store.password_file's (engines.connect_args), never in the DSN
        self._feed = feed
        self._node = node
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.received = 0

    async def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once LISTEN is in place (or after `timeout`, the
        listener still trying in the background)."""
        self._task = asyncio.create_task(self._run(), name="nodefeed-listener")
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("nodefeed.not_listening_yet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            node, changes = decode(payload)
        except (ValueError, TypeError) as e:
            log.warning("nodefeed.bad_payload", error=type(e).__name__)
            return
        if node == self._node:
            return  # our own changes were published locally at commit
        self.received += len(changes)
        self._feed.publish(changes)

    async def _run(self) -> None:
        import asyncpg  # PostgreSQL only: SQLite installs need not have it

        delay = 0.5
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, password=self._password, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self._listening.set()
                delay = 0.5
                log.info("nodefeed.listening")
                await lost.wait()
                log.warning("nodefeed.connection_lost")
            except asyncio.CancelledError:
                if conn is not None:
                    await asyncio.shield(conn.close(timeout=5))
                raise
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as e:
                log.warning("nodefeed.connect_failed", error=type(e).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
