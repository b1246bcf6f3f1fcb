"""The daemon's pruning of QRESYNC's expunged UIDs (mailbox_store/expunged.py): one
bounded run at start, then one every PRUNE_INTERVAL seconds while IMAP serves. A run
that fails (storage full, database down) is logged and retried at the next interval."""
from __future__ import annotations

import structlog

from mailbox_store.expunged import prune_expunged
from mailbox_store.store import Store
from relay.core.periodic import Periodic

log = structlog.get_logger("relay.imap.expungeprune")

PRUNE_INTERVAL = 3600.0  # seconds between two runs
PRUNE_MAX_ROWS = 10_000  # expunged UIDs forgotten per run at most (one writer job)


class ExpungedPruner(Periodic):
    task_name = "imap-expunged-prune"
    failed_event = "imap.expunged_prune_failed"

    def __init__(self, store: Store, keep: int, interval: float = PRUNE_INTERVAL,
                 max_rows: int = PRUNE_MAX_ROWS):
        super().__init__(interval, log)
        self.store = store
        self.keep = keep
        self.max_rows = max_rows

    async def run_once(self) -> int:
        """One bounded run; returns the number of expunged UIDs forgotten."""
        pruned = await prune_expunged(self.store, self.keep, self.max_rows)
        if pruned.rows:
            log.info("imap.expunged_pruned", folders=pruned.folders, rows=pruned.rows)
        return pruned.rows
