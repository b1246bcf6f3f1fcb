"""A patient's message leaving through us: the checks of submission's RCPT and DATA and
the commit (Sent copy + outbound queue, DKIM, one transaction), shared by the two
fronts a patient writes from, SMTP submission (relay/smtp/submission.py) and the
webmail (relay/web/). Both give the same answer to the same message: the refusals are
the same Decisions, whose French text the webmail shows as is.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from relay.core.pools import run_in
from mailbox_store.outbound import Recipient, Submitted
from mailbox_store.store import MailboxInfo
from policy.attachments import PATIENT_MAX_PART_BYTES
from policy.conversation import answered_ids, normalise_address, patient_recipient_decision
from policy.decisions import STORE_UNAVAILABLE, Decision
from policy.headers import without_fields
from relay.delivery.outgoing import queue_outgoing
from relay.inbound.pipeline import FROM_MISMATCH, SubmissionRequest, decide_submission
from relay.core.storefaults import store_failure

if TYPE_CHECKING:
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.outgoing_mail")
__all__ = ["FROM_MISMATCH", "recipient_decision", "submit_message"]


async def recipient_decision(rt: "Runtime", sender: MailboxInfo, address: str, in_reply_to: tuple[str, ...] = (),
                             references: tuple[str, ...] = ()) -> Decision:
    """May `sender` write to `address` (answering these message ids)? policy decides
    (DESIGN.md §4 "Professional initiates", "Closing") with the store's facts."""
    norm = normalise_address(address)
    facts = await rt.store.recipient_facts(sender.id, norm or "", in_reply_to, references)
    return patient_recipient_decision(address, rt.config.domain, rt.trust.trust.lists, facts)


async def submit_message(rt: "Runtime", sender: MailboxInfo, raw: bytes, mail_from: str,
                         rcpts: Sequence[str]) -> Decision | Submitted:
    """DATA's checks on a message whose recipients each passed recipient_decision, then
    the Sent copy and the queue in one transaction. A Decision when refused."""
    limits = dataclasses.replace(rt.config.attachments, max_part_bytes=PATIENT_MAX_PART_BYTES)
    # parsed once and the content rules run in order, off the event loop (relay/inbound)
    decided = await run_in(rt.pools and rt.pools.parse, decide_submission, SubmissionRequest(raw, mail_from, limits))
    if isinstance(decided, Decision):
        return decided
    # the reply-to-a-closed-message rule needs the message itself (policy/conversation.py)
    in_reply_to, references = decided.in_reply_to, decided.references
    if answered_ids(in_reply_to, references):
        for rcpt in rcpts:
            decision = await recipient_decision(rt, sender, rcpt, in_reply_to, references)
            if not decision.accepted:
                return decision
    recipients = [Recipient(r, r.rpartition("@")[2].lower()) for r in rcpts]
    try:
        # RFC 6409 §8.1 / RFC 5322 §3.6.3: Bcc never leaves with the message
        outgoing = without_fields(raw, {"bcc"})
        return await asyncio.shield(queue_outgoing(rt, sender, outgoing, mail_from, recipients, "reply",
                                                   sent_folder="Sent"))
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.error("submission.queue_failed", error=type(e).__name__)
        return store_failure(e, rt.config) or STORE_UNAVAILABLE

