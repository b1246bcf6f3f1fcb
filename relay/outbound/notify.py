"""Notifications (DESIGN.md §4): a patient with a personal address is told of a new
message or dossier document, with no health content (reports.build_notification), at
most once per `notifications.window` seconds, through the configured smarthost.

The window is kept in memory: after a restart the next event notifies again, which
errs on the side of telling the patient. With several nodes on one PostgreSQL (issue
14), the node that committed the delivery notifies (other nodes' changes are `remote`),
and the window is also taken from the database budget (mailbox_store/budgets.py), so
deliveries to one patient spread over N nodes still notify once per window, not N
times. On SQLite (one node) the memory is enough and costs no write per delivery."""
from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import structlog

from mailbox_store.feed import Change
from mailbox_store.outbound import Recipient
from relay.delivery.outgoing import queue_outgoing
from relay.delivery.reports import build_notification
from relay.core.feedwork import FeedWorker

if TYPE_CHECKING:
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.notify")


class Notifier(FeedWorker):
    def __init__(self, runtime: "Runtime"):
        super().__init__(runtime)
        self._last: dict[int, float] = {}

    def on_change(self, change: Change) -> None:
        if self.rt.config.notify_smarthost is None or change.remote:
            return  # another node's delivery: that node notifies (mailbox_store/nodefeed.py)
        if change.kind == "message.new" and change.folder == "INBOX":
            kind = "message"
        elif change.kind == "dossier.new":
            kind = "document"
        else:
            return
        now = time.monotonic()
        last = self._last.get(change.mailbox_id)
        if last is not None and now - last < self.rt.config.notify_window:
            return
        self._last[change.mailbox_id] = now
        self.spawn(self._notify(change.mailbox_id, kind))

    async def _notify(self, mailbox_id: int, kind: str) -> None:
        try:
            mailbox = await self.rt.store.mailbox_by_id(mailbox_id)
            if mailbox is None or not mailbox.notify_email or mailbox.ins == "postmaster":
                return
            if self.rt.store.shared_budgets and not await self.rt.store.budget_take(
                    f"notify:{mailbox_id}", 1, dt.timedelta(seconds=self.rt.config.notify_window)):
                return  # another node told this patient within the window
            cfg = self.rt.config
            to = mailbox.notify_email
            notice = build_notification(from_addr=cfg.notify_from, to=to, kind=kind, count=1,
                                        webmail_url=cfg.notify_webmail_url or None, hostname=cfg.hostname)
            postmaster = await self.rt.store.cached_mailbox("postmaster")
            assert postmaster is not None
            await queue_outgoing(self.rt, postmaster, notice, "", [Recipient(to, to.rpartition("@")[2], "smarthost")],
                                 "notification")
            log.info("notification.queued", kind=kind, ins_hash=self.rt.master.pseudonym(mailbox.ins))
        except Exception as e:
            log.error("notification.failed", error=type(e).__name__)
