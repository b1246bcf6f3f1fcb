"""Read receipts (DESIGN.md §4 "Read receipts", RFC 8098): a professional's message
with Disposition-Notification-To gets an MDN "displayed" the first time the patient
marks it \\Seen (IMAP or webmail), through the outbound queue. The patient cannot
refuse it.

Implementation notes:
- The request is recorded by the MX at delivery (`policy.receipts.receipt_request`), in the delivery's
  transaction, only when the address is the From of a server authenticated for its
  domain (RFC 8098 §2.1: a receipt to anyone else could be used to send mail). IMAP
  APPEND or flags cannot create one: a patient cannot make us send mail this way.
- Sent once: the store marks the request sent when it hands it out (claim_receipt),
  whatever happens to the message's flags later. A crash between that mark and the
  queue loses that receipt rather than sending two.
- No content is read to send it: the MDN names the original Message-ID only.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from mailbox_store.feed import Change
from mailbox_store.messages import SEEN
from mailbox_store.outbound import Recipient
from policy.receipts import receipt_request  # noqa: F401 (the rule lives in policy/)
from relay.delivery.outgoing import queue_outgoing
from relay.delivery.reports import build_mdn
from relay.core.feedwork import FeedWorker

if TYPE_CHECKING:
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.receipts")
MAX_CANDIDATES = 10_000  # \\Seen candidates gathered for one batch
NO_RECEIPT_KEPT = 100_000  # messages remembered as having no receipt to send
NO_RECEIPT_TTL = 60.0  # seconds they are remembered


class ReceiptSender(FeedWorker):
    """Candidates (a flag change leaving \\Seen set) are gathered per folder and asked
    about in one read per folder and burst (receiptreads.py): a STORE on 100 seen
    messages was 100 tasks and 100 reader hops (issue 12 §3). The burst is what one
    turn of the event loop publishes; pending candidates are bounded."""

    def __init__(self, runtime: Runtime):
        super().__init__(runtime)
        self._candidates: dict[tuple[int, str], set[int]] = {}
        self._count = 0
        self._draining = False
        # messages known to have no receipt to send, ever: a request is recorded only in
        # its message's delivery transaction, and once sent it is not pending again; a
        # folder change of the mailbox forgets its entries (a re-created folder reuses
        # UIDs), and an answer read across such a change is not kept (_generation); all
        # are forgotten every NO_RECEIPT_TTL (a purged mailbox's id may be reused)
        self._none: dict[tuple[int, str], set[int]] = {}
        self._none_count = 0
        self._generation = 0
        self._none_since = time.monotonic()

    def on_change(self, change: Change) -> None:
        if self._none and time.monotonic() - self._none_since > NO_RECEIPT_TTL:
            self._forget_all()
        if change.kind.startswith("folder."):
            for key in [k for k in self._none if k[0] == change.mailbox_id]:
                self._none_count -= len(self._none.pop(key))
            self._generation += 1
            return
        if change.kind == "message.flags" and change.flags is not None and SEEN in change.flags:
            if change.uid in self._none.get((change.mailbox_id, change.folder), ()):
                return  # asked before: no receipt (no read, issue 12 §3)
            if self._count >= MAX_CANDIDATES:  # a burst beyond the bound: its own batch
                self.spawn(self._maybe_send({(change.mailbox_id, change.folder): {change.uid}}))
                return
            uids = self._candidates.setdefault((change.mailbox_id, change.folder), set())
            if change.uid not in uids:
                uids.add(change.uid)
                self._count += 1
            if not self._draining:
                self._draining = True
                self.spawn(self._drain())

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # the rest of this burst's changes are published meanwhile
        batch, self._candidates, self._count, self._draining = self._candidates, {}, 0, False
        await self._maybe_send(batch)

    async def _maybe_send(self, batch: dict[tuple[int, str], set[int]]) -> None:
        for (mailbox_id, folder), uids in batch.items():
            generation = self._generation
            try:
                # the common case, answered by a read: no writer job (issue 12 §3)
                pending = await self.rt.store.receipts_pending(mailbox_id, folder, sorted(uids))
            except Exception as e:  # a receipt must never disturb the session that set \Seen
                log.error("mdn.failed", error=type(e).__name__)
                continue
            if generation == self._generation:
                self._remember_none(mailbox_id, folder, uids - pending)
            for uid in sorted(pending):
                try:
                    await self._send(mailbox_id, folder, uid)
                except Exception as e:  # nor one receipt's failure the others
                    log.error("mdn.failed", error=type(e).__name__)

    def _forget_all(self) -> None:
        self._none.clear()
        self._none_count = 0
        self._none_since = time.monotonic()
        self._generation += 1

    def _remember_none(self, mailbox_id: int, folder: str, uids: set[int]) -> None:
        if self._none_count + len(uids) > NO_RECEIPT_KEPT:
            self._forget_all()  # bounded: asked again
        if uids and len(uids) <= NO_RECEIPT_KEPT:
            known = self._none.setdefault((mailbox_id, folder), set())
            before = len(known)
            known |= uids
            self._none_count += len(known) - before

    async def _send(self, mailbox_id: int, folder: str, uid: int) -> None:
        claimed = await self.rt.store.claim_receipt(mailbox_id, folder, uid)
        if claimed is None:
            return
        mailbox = await self.rt.store.mailbox_by_id(mailbox_id)
        if mailbox is None:
            return
        to, message_id = claimed
        cfg = self.rt.config
        patient = f"{mailbox.ins}@{cfg.domain}"
        mdn = build_mdn(reporting_ua=f"{cfg.hostname}; mssante-relay", from_addr=patient, to=to,
                        original_message_id=message_id, original_recipient=None, final_recipient=patient,
                        original_subject=None, hostname=cfg.hostname)
        # RFC 8098 §2.1 (RFC 3798 §3): the envelope sender of an MDN is null
        done = await queue_outgoing(self.rt, mailbox, mdn, "", [Recipient(to, to.rpartition("@")[2])], "mdn")
        log.info("mdn.queued", envelope_id=done.envelope_id, ins_hash=self.rt.master.pseudonym(mailbox.ins))
