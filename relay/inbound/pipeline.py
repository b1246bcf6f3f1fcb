"""The inbound pipeline of the MX (issue 15 item 1): parse once, decide, then one
commit.

Implementation notes (invariants a newcomer must not break):
- `decide` is the whole parse-and-decide step: a top-level function from plain,
  picklable data (bytes, dataclasses, the trust list) to plain data, with no I/O and no
  event loop. It runs in a worker thread today (asyncio.to_thread) and can move to a
  process pool unchanged: nothing it takes or returns may hold a lock, a socket, a
  session or a callback.
- The message is parsed once (parsed.py); the header section handed to the
  attachment and dossier rules is that parse, not a second one.
- The order of the decisions is DESIGN.md §4's: the attachment rules (a refusal
  names the part, 554 5.6.1 / 552 5.3.4) before anything else; then, for a message
  from a professional (not the null sender), the conversation change and the
  read-receipt request; the dossier documents of each patient.
- Everything the decision yields (the message, its documents and not-filed reasons,
  the conversation change, the receipt request, the TEST acknowledgement) is handed
  to ONE store transaction (Store.deliver): all of it is committed, or none.
- Nothing is queued, published or announced before that commit: the store's feed
  publishes after COMMIT (writer.py), the TEST acknowledgement is only prepared
  (sealed, not written) before it, and the caller logs it as answered after.
"""
from __future__ import annotations

from dataclasses import dataclass

from dossier_bridge.dossier import Filing, inspect_message
from mailbox_store.store import MailboxInfo
from policy.attachments import AttachmentLimits
from policy.conversation import ConversationEffects, professional_effects
from policy.decisions import Decision
from policy.receipts import receipt_request
from policy.trust import TrustList, check_sender
from relay.inbound.parsed import ParsedMessage, parse


@dataclass(frozen=True)
class InboundRequest:
    """What the MX knows once DATA ended, as plain data."""

    raw: bytes  # as the sender sent it
    patients: tuple[MailboxInfo, ...]  # whose dossiers may receive documents
    limits: AttachmentLimits
    cert_subject: str | None  # of the sending server's client certificate
    null_sender: bool  # MAIL FROM:<> (a bounce): opens nothing, files nothing
    trust: TrustList
    own_domain: str


@dataclass(frozen=True)
class InboundDecision:
    """What one accepted message yields, to be committed together."""

    parsed: ParsedMessage
    filing: Filing  # documents per patient, and (patient, reason) not filed
    conversation: ConversationEffects | None
    receipt: tuple[str, str | None] | None  # requested read receipt: (address, Message-ID)


def decide(request: InboundRequest) -> InboundDecision | Decision:
    """The ordered policy decisions on one received message: a refusal, or what the
    delivery commits. Pure and CPU-bound (see the notes above)."""
    parsed = parse(request.raw)
    patients = [] if request.null_sender else list(request.patients)
    filing = inspect_message(request.raw, patients, request.limits, request.cert_subject,
                             headers=parsed.headers)
    if isinstance(filing, Decision):
        return filing
    conversation = receipt = None
    if not request.null_sender:
        subject = request.cert_subject or ""

        def sender_ok(domain: str) -> bool:  # the sending server's certificate is listed for it
            return check_sender(request.trust, domain, subject) is None

        conversation = professional_effects(parsed.professional, request.trust.lists,
                                            own_domain=request.own_domain, sender_ok=sender_ok)
        receipt = receipt_request(parsed.headers, parsed.professional, sender_ok)
    return InboundDecision(parsed, filing, conversation, receipt)
