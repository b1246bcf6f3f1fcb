"""The daemon's pruning of ended budget windows (mailbox_store/budgets.py): the rows of
the TEST acknowledgements' senders, the notified mailboxes and the login failures were
never deleted, one row per key ever seen. One bounded run at start, then one every
PRUNE_INTERVAL seconds, as the pruning of QRESYNC's expunged UIDs
(relay/imap/expungeprune.py); a run that fails is logged and retried at the next one.

A row is deleted once its window started longer ago than the longest window any budget
uses (auto-reply window, notification window, login failures' forget_after): by then
`take` would reset it anyway, whichever budget it belongs to."""
from __future__ import annotations

import datetime as dt

import structlog

from mailbox_store.store import Store
from relay.core.config import Config
from relay.core.periodic import Periodic

log = structlog.get_logger("relay.budgetprune")

PRUNE_INTERVAL = 3600.0  # seconds between two runs
PRUNE_MAX_ROWS = 10_000  # rows deleted per run at most (one writer job)


def longest_window(config: Config) -> dt.timedelta:
    """The longest window of the budgets this configuration runs."""
    windows = [config.notify_window, config.auth.forget_after]
    if config.delivery is not None:
        windows.append(config.delivery.auto_reply_window)
    return dt.timedelta(seconds=max(windows))


class BudgetPruner(Periodic):
    task_name = "budget-prune"
    failed_event = "budgets.prune_failed"

    def __init__(self, store: Store, keep: dt.timedelta, interval: float = PRUNE_INTERVAL,
                 max_rows: int = PRUNE_MAX_ROWS):
        super().__init__(interval, log)
        self.store = store
        self.keep = keep
        self.max_rows = max_rows

    async def run_once(self) -> int:
        """One bounded run; returns the number of rows deleted."""
        rows = await self.store.budgets_prune(self.keep, self.max_rows)
        if rows:
            log.info("budgets.pruned", rows=rows)
        return rows
