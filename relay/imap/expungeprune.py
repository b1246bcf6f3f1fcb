"""The daemon's pruning of QRESYNC's expunged UIDs (mailbox_store/expunged.py): one
bounded run at start, then one every PRUNE_INTERVAL seconds while IMAP serves. A run
that fails (storage full, database down) is logged and retried at the next interval."""
from __future__ import annotations

import asyncio

import structlog

from mailbox_store.expunged import prune_expunged
from mailbox_store.store import Store

log = structlog.get_logger("relay.imap.expungeprune")

PRUNE_INTERVAL = 3600.0  # seconds between two runs
PRUNE_MAX_ROWS = 10_000  # expunged UIDs forgotten per run at most (one writer job)


class ExpungedPruner:
    def __init__(self, store: Store, keep: int, interval: float = PRUNE_INTERVAL,
                 max_rows: int = PRUNE_MAX_ROWS):
        self.store = store
        self.keep = keep
        self.interval = interval
        self.max_rows = max_rows
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="imap-expunged-prune")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def run_once(self) -> int:
        """One bounded run; returns the number of expunged UIDs forgotten."""
        pruned = await prune_expunged(self.store, self.keep, self.max_rows)
        if pruned.rows:
            log.info("imap.expunged_pruned", folders=pruned.folders, rows=pruned.rows)
        return pruned.rows

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the next run retries; IMAP keeps serving meanwhile
                log.warning("imap.expunged_prune_failed", error=type(e).__name__)
            await asyncio.sleep(self.interval)
