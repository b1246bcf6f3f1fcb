"""The TEST address (DESIGN.md §4): a professional's message to
reponse.automatique-test@patient.mssante.fr whose subject and body both contain TEST
gets the predefined acknowledgement, through the outbound queue like any mail.

Loop safety (RFC 3834): policy/autoreply.py refuses null senders, automatic messages,
lists and our own address; replies are marked Auto-Submitted: auto-replied and sent
from the null reverse-path (RFC 3834 §3.3), at most `auto_reply_per_sender` per
sender and window. The budget is kept in the database (mailbox_store/budgets.py): it
holds across restarts and across the nodes sharing one PostgreSQL (issue 14), which a
per-node count would multiply by the number of nodes. Preparing only checks that the
budget has room; the unit is taken in the commit of the acknowledgement (the message's
own transaction), so a message answered 451 spends none of it."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

import structlog

from mailbox_store.budgets import BudgetClaim, budget_key
from mailbox_store.outbound import PreparedOutgoing, Recipient
from policy.addresses import TEST_LOCAL_PART
from policy.autoreply import auto_reply_refusal
from policy.conversation import normalise_address
from policy.parsed import MessageFacts
from relay.delivery.outgoing import prepare_outgoing
from relay.delivery.reports import build_test_reply
from relay.inbound.parsed import parse

if TYPE_CHECKING:
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.autotest")


class AutoTest:
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime

    async def prepare(self, envelope_from: str, message: bytes | MessageFacts,
                      queue_id: str) -> PreparedOutgoing | None:
        """The acknowledgement, sealed for the queue but not written, when the rules
        allow one; None otherwise. The MX commits it in the transaction of the message
        it answers (never before it: a 451 must not follow a queued answer). `message`
        is what the MX's one parse read of it (relay/inbound, test_address=True), with
        the text body already searched for TEST off the event loop."""
        cfg = self.rt.config
        assert cfg.delivery is not None
        if isinstance(message, MessageFacts):  # the MX's: read with test_address=True
            facts = message
        else:  # tools and tests hand bytes: parsed here, once
            facts = (await asyncio.to_thread(parse, message, cfg.attachments)).facts(test_address=True)
        refusal, sender = ack_refusal(envelope_from, facts, cfg.domain)
        claim: BudgetClaim | None = None
        if refusal is None:
            assert sender is not None
            claim = BudgetClaim(budget_key("autoreply", sender), cfg.delivery.auto_reply_per_sender,
                                dt.timedelta(seconds=cfg.delivery.auto_reply_window))
            if not await self.rt.store.budget_has_room(claim.key, claim.limit, claim.window):
                refusal = "budget_exhausted"
        if refusal is not None:
            log.info("autotest.not_answered", queue_id=queue_id, reason=refusal)
            return None
        assert sender is not None
        reply = build_test_reply(from_addr=f"{TEST_LOCAL_PART}@{cfg.domain}", to=sender,
                                 original_message_id=facts.headers.get("Message-ID"),
                                 original_subject=facts.subject, hostname=cfg.hostname)
        postmaster = await self.rt.store.cached_mailbox("postmaster")
        assert postmaster is not None  # created at start (runtime.py)
        prepared = await prepare_outgoing(self.rt, postmaster, reply, "", [Recipient(sender, sender.rpartition("@")[2])],
                                          "autoreply")
        return dataclasses.replace(prepared, budget=claim)  # taken in the commit (module note)

    @staticmethod
    def committed(prepared: PreparedOutgoing, queue_id: str) -> None:
        """Log an acknowledgement once its transaction committed."""
        if prepared.budget is not None and prepared.budget.granted is False:
            # another message of this sender spent the last unit between prepare and commit
            log.info("autotest.not_answered", queue_id=queue_id, reason="budget_exhausted")
            return
        log.info("autotest.answered", queue_id=queue_id, envelope_id=prepared.envelope_id,
                 sender_domain=prepared.rows[0]["domain"] if prepared.rows else "")


def ack_refusal(envelope_from: str, facts: MessageFacts, domain: str) -> tuple[str | None, str | None]:
    """(why not to answer, None) or (None, the address to answer): the loop rules of
    RFC 3834 (policy/autoreply.py), then TEST in the subject (decoded once, RFC 2047)
    and in the text body, as the pipeline read them (MessageFacts.test_request)."""
    refusal = auto_reply_refusal(envelope_from, facts.headers, domain=domain)
    sender = normalise_address(envelope_from) if refusal is None else None
    if refusal is None and sender is None:
        refusal = "unusable_sender"
    if refusal is None and not facts.test_request:
        refusal = "not_a_test_request"
    return refusal, sender if refusal is None else None
