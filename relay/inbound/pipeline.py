"""The inbound pipeline (issue 15 item 1): every way a message comes in, parsed once,
decided on off the event loop, and everything it yields committed in one transaction.

The entries, each a pure top-level function from plain data to plain data:
- `decide`: a professional's message at the MX (relay/smtp/mx.py);
- `decide_submission`: a patient's message, from SMTP submission or the webmail
  (relay/outbound/outgoing_mail.py, shared by relay/smtp/submission.py and relay/web/);
- the patient's filing into the dossier ("Dossier medical" IMAP folder, the webmail's
  "Enregistrer dans mon dossier"): dossier_bridge/filing.py parses with the same
  `parse` and calls the same `inspect_message` (dossier_bridge may not import relay).

Implementation notes (invariants a newcomer must not break):
- Parsed once. `parse` (policy/parsed.py) is the only parse of an inbound message: the
  one MIME parser (policy/mime.py) builds the tree with byte offsets, the header
  section (policy.mime.Headers), the decoded subject (the one RFC 2047 decoder,
  policy.mime.decode_words) and the leaves with their classification. The attachment
  and dossier rules, the conversation and receipt rules and the TEST check read that
  object; none of them parses the bytes again, and nothing on these paths uses the
  stdlib `email` parser.
- Pure and picklable. An entry takes bytes, dataclasses and the trust list and returns
  a Decision or a dataclass: no I/O, no event loop, no lock, socket, session or
  callback. It runs in the `parse` pool (relay/core/pools.py: threads, or processes) and can
  move between the two unchanged.
- Ordered as DESIGN.md §4. MX: the attachment rules first (a refusal names the part,
  554 5.6.1 / 552 5.3.4 / 554 5.6.0), then, for a professional (not the null sender),
  the conversation change and the read-receipt request, then each patient's dossier
  documents. Submission: no bare CR or LF (500 5.5.2), the From header is the MAIL
  FROM address (553 5.7.1), the attachment rules under the patient's limits
  (5 MB a file); the conversation rules that need the store's facts (a reply to a
  message closed by X-MSS-MES) run after, on the ids the decision hands back.
- Small results. A decision keeps the header section and the facts read from it
  (MessageFacts), never the tree or the leaves' decoded contents: those die with the
  decision, so no third copy of the attachments waits for the commit, and a process
  pool sends back no copy of the message.
- Byte ranges. The documents are located in their message by the byte range of
  their encoded body, read from the tree's offsets (Part.span), never by part number;
  a caller that stores other bytes than it parsed (the MX puts trace headers in
  front) shifts them (dossier_bridge.dossier.shifted).
- One transaction. What a decision yields (the message, its documents and not-filed
  reasons, the conversation change, the receipt request, the TEST acknowledgement; for
  submission the Sent copy and the outbound entries) is handed to ONE store call
  (Store.deliver, queue_outgoing): all of it is committed, or none.
- Nothing before the commit. Nothing is queued, published or announced before that
  commit: the store's feed publishes after COMMIT (writer.py), the TEST acknowledgement
  is only prepared (sealed, not written) before it, and the caller logs it as answered
  after.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.utils import getaddresses  # an address-list reader, not a message parser

from dossier_bridge.dossier import Filing, inspect_message
from mailbox_store.store import MailboxInfo
from policy.attachments import AttachmentLimits
from policy.conversation import ConversationEffects, normalise_address, parse_msg_ids, professional_effects
from policy.decisions import BARE_LINE_ENDING, Decision
from policy.lineends import has_bare_line_ending
from policy.receipts import receipt_request
from policy.trust import TrustList, check_sender
from relay.inbound.parsed import MessageFacts, parse

FROM_MISMATCH = Decision(553, "5.7.1", "L'en-tete From doit etre votre adresse (celle de MAIL FROM)",
                         "The From header must be your own address (the MAIL FROM address)", "from_mismatch")


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
    test_address: bool = False  # one recipient is the TEST address: read its text body too


@dataclass(frozen=True)
class InboundDecision:
    """What one accepted message yields, to be committed together."""

    parsed: MessageFacts  # what the caller reads of the parse after it (no tree, no contents)
    filing: Filing  # documents per patient, and (patient, reason) not filed
    conversation: ConversationEffects | None
    receipt: tuple[str, str | None] | None  # requested read receipt: (address, Message-ID)


def decide(request: InboundRequest) -> InboundDecision | Decision:
    """The ordered policy decisions on one received message: a refusal, or what the
    delivery commits. Pure and CPU-bound (see the notes above)."""
    parsed = parse(request.raw, request.limits)
    patients = [] if request.null_sender else list(request.patients)
    filing = inspect_message(parsed, patients, request.limits, request.cert_subject)
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
    return InboundDecision(parsed.facts(request.test_address), filing, conversation, receipt)


@dataclass(frozen=True)
class SubmissionRequest:
    """A patient's message at the end of DATA (or the webmail's send), as plain data."""

    raw: bytes
    mail_from: str  # the envelope sender, already checked to be the patient or a ward
    limits: AttachmentLimits  # the patient's: policy.attachments.PATIENT_MAX_PART_BYTES a file


@dataclass(frozen=True)
class SubmissionDecision:
    """A patient's message the content rules accept; the store-backed rules still to run."""

    parsed: MessageFacts
    in_reply_to: tuple[str, ...]  # the ids it answers (RFC 5322 §3.6.4), for the
    references: tuple[str, ...]   # reply-to-a-closed-message rule (policy/conversation.py)


def decide_submission(request: SubmissionRequest) -> SubmissionDecision | Decision:
    """The ordered content rules on a patient's message (see the notes above): a
    refusal, or the parse and the ids the conversation rules need. Pure, CPU-bound."""
    if has_bare_line_ending(request.raw):  # RFC 5321 §2.3.8, as on the MX
        return BARE_LINE_ENDING
    parsed = parse(request.raw, request.limits)
    froms = [a for _, a in getaddresses(parsed.headers.get_all("From", []) or [])]
    if len(froms) != 1 or normalise_address(froms[0]) != normalise_address(request.mail_from):
        return FROM_MISMATCH
    checked = inspect_message(parsed, [], request.limits, None, file=False)
    if isinstance(checked, Decision):
        return checked
    return SubmissionDecision(parsed.facts(), parse_msg_ids(parsed.headers.get("In-Reply-To")),
                              parse_msg_ids(parsed.headers.get("References")))
