"""Read receipts (DESIGN.md §4 "Read receipts", RFC 8098): a professional's message
with Disposition-Notification-To gets an MDN "displayed" the first time the patient
marks it \\Seen (IMAP or webmail), through the outbound queue. The patient cannot
refuse it. Sent once: the message gets the RFC 3503 keyword $MDNSent with it.

The feed tells us of every flag change after its commit; the work (decrypting the
headers, queuing) runs in a task, never in the feed callback."""
from __future__ import annotations

import asyncio
from email.utils import getaddresses
from typing import TYPE_CHECKING

import structlog

from mailbox_store.feed import Change
from mailbox_store.messages import SEEN
from mailbox_store.outbound import Recipient
from policy.conversation import decode_subject, normalise_address
from policy.headers import parse_headers
from relay.delivery.outgoing import queue_outgoing
from relay.delivery.reports import build_mdn

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = structlog.get_logger("relay.receipts")
MDN_SENT = "$MDNSent"  # RFC 3503 §3.1


class ReceiptSender:
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.rt.store.feed.listen(self._on_change)

    def stop(self) -> None:
        self.rt.store.feed.unlisten(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.kind == "message.flags" and change.flags is not None and SEEN in change.flags \
                and MDN_SENT not in change.flags and change.folder != "Sent":
            task = asyncio.ensure_future(self._maybe_send(change))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _maybe_send(self, change: Change) -> None:
        try:
            await self._send(change)
        except Exception as e:  # a receipt must never disturb the session that set \Seen
            log.error("mdn.failed", error=type(e).__name__)

    async def _send(self, change: Change) -> None:
        mailbox = await self.rt.store.mailbox_by_id(change.mailbox_id)
        if mailbox is None:
            return
        raw = (await self.rt.store.fetch_raw_many(mailbox.ins, change.folder, [change.uid])).get(change.uid)
        if raw is None:
            return
        headers = parse_headers(raw)
        requested = [a for _, a in getaddresses([str(v) for v in headers.get_all("Disposition-Notification-To", [])])]
        to = normalise_address(requested[0]) if requested else None
        if to is None:
            return
        if to.rpartition("@")[2] not in self.rt.trust.trust.domains:
            # nothing leaves the trust space (DESIGN.md §4), a receipt neither
            log.info("mdn.not_sent", reason="outside_trust_space")
            return
        # flag first, atomically: of two \Seen changes racing, one only sends
        if not await self.rt.store.add_flag_once(mailbox.id, change.folder, change.uid, MDN_SENT):
            return
        cfg = self.rt.config
        patient = f"{mailbox.ins}@{cfg.domain}"
        mdn = build_mdn(reporting_ua=f"{cfg.hostname}; mssante-relay", from_addr=patient, to=to,
                        original_message_id=_text(headers.get("Message-ID")), original_recipient=None,
                        final_recipient=patient, original_subject=decode_subject(_text(headers.get("Subject"))),
                        hostname=cfg.hostname)
        # RFC 8098 §2.1 (RFC 3798 §3): the envelope sender of an MDN is null
        done = await queue_outgoing(self.rt, mailbox, mdn, "", [Recipient(to, to.rpartition("@")[2])], "mdn")
        log.info("mdn.queued", envelope_id=done.envelope_id, ins_hash=self.rt.master.pseudonym(mailbox.ins))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
