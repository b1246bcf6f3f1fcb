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

import structlog

from mailbox_store.feed import Change
from mailbox_store.messages import SEEN
from mailbox_store.outbound import Recipient
from policy.receipts import receipt_request  # noqa: F401 (the rule lives in policy/)
from relay.delivery.outgoing import queue_outgoing
from relay.delivery.reports import build_mdn
from relay.core.feedwork import FeedWorker

log = structlog.get_logger("relay.receipts")


class ReceiptSender(FeedWorker):
    def on_change(self, change: Change) -> None:
        if change.kind == "message.flags" and change.flags is not None and SEEN in change.flags:
            self.spawn(self._maybe_send(change))

    async def _maybe_send(self, change: Change) -> None:
        try:
            await self._send(change)
        except Exception as e:  # a receipt must never disturb the session that set \Seen
            log.error("mdn.failed", error=type(e).__name__)

    async def _send(self, change: Change) -> None:
        if not await self.rt.store.receipt_pending(change.mailbox_id, change.folder, change.uid):
            return  # the common case, answered by a read: no writer job (issue 12 §3)
        claimed = await self.rt.store.claim_receipt(change.mailbox_id, change.folder, change.uid)
        if claimed is None:
            return
        mailbox = await self.rt.store.mailbox_by_id(change.mailbox_id)
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
