"""A received message parsed once (issue 15 item 1): what every inbound path (the MX,
submission, the webmail's outbox, the patient's filing into the dossier) reads of a
message, built by the one MIME parser (policy/mime.py) and classified by the one set of
attachment rules (policy/attachments.py). Pure and picklable, so that the
parse-and-decide step can run in a worker thread or another process.

What it holds, all read from the same bytes:
- `tree`: the MIME tree, every entity with byte offsets into the message (`start`,
  `body_start`, `end`: header section and body), its content type, transfer encoding
  and Content-* fields (RFC 2045, RFC 2183);
- `headers`: the top header section as the policy rules read it (policy.mime.Headers);
- `professional`: the conversation facts (From, Reply-To, ids, the subject decoded once,
  RFC 2047);
- `parts`: the leaves in IMAP part order (RFC 9051 §6.4.5), each with its decoded file
  name, declared type, disposition, transfer-decoded content and the byte range of its
  encoded body (what dossier documents are located by); or the refusal of a structure
  the rules will not walk (554 5.6.0);
- `attachments`: the leaves the allow-list accepted with their real kind, or the first
  refusal naming its part (554 5.6.1 / 552 5.3.4).
"""
from __future__ import annotations

from dataclasses import dataclass

from policy import mime
from policy.attachments import Attachment, AttachmentLimits, Part, check_message, mime_parts
from policy.autoreply import is_test_request
from policy.conversation import ProfessionalMessage, professional_from_headers
from policy.decisions import Decision
from policy.headers import header_block


@dataclass(frozen=True, eq=False)
class ParsedMessage:
    """One inbound message, parsed once (see the module's notes). Lives as long as the
    decision that reads it, never past it (`facts` is what stays)."""

    tree: mime.Part  # the whole message; offsets index the bytes it was parsed from
    headers: mime.Headers
    professional: ProfessionalMessage
    parts: tuple[Part, ...] | Decision
    attachments: tuple[Attachment, ...] | Decision  # under the limits it was parsed with

    @property
    def raw(self) -> bytes:
        return self.tree.raw

    @property
    def head(self) -> bytes:
        """The header section as received, with its final line end but not the empty
        line (RFC 5322 §2.1)."""
        return header_block(self.tree.raw)

    @property
    def subject(self) -> str:
        """The subject decoded once (RFC 2047), as the [FIN] rule reads it."""
        return self.professional.subject

    @property
    def refusal(self) -> Decision | None:
        """The attachment rules' answer when they refuse the message."""
        return self.attachments if isinstance(self.attachments, Decision) else None

    def body_text(self) -> str:
        """The message's text as a reader shows it first: the first text/plain entity
        that is no attachment, looking into multiparts but not into enclosed messages
        (as `email.message.EmailMessage.get_body(("plain",))` did); "" when there is
        none. Decoded tolerantly, never raises."""
        stack = [self.tree]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(reversed(node.children))
                continue
            if node.message is not None or (node.type.lower(), node.subtype.lower()) != ("text", "plain"):
                continue
            if (node.disposition or "").strip().lower() == "attachment":
                continue
            return node.text()
        return ""

    def facts(self, test_address: bool = False) -> MessageFacts:
        """What outlives the decision, until the commit and after: the header section
        and the facts read from it, and (for a message to the TEST address) whether it
        is a TEST request. Neither the tree nor the leaves' decoded contents: kept, they
        would hold a third copy of the attachments until the commit, or carry the whole
        message back through a process pool's pipe (issue 15 §2)."""
        test = is_test_request(self.subject, self.body_text()) if test_address else None
        return MessageFacts(self.head, self.headers, self.professional, test)


@dataclass(frozen=True)
class MessageFacts:
    """The small part of a parse the MX keeps past the decision (ParsedMessage.facts)."""

    head: bytes  # the header section (bounded by the MX's header limits)
    headers: mime.Headers
    professional: ProfessionalMessage
    test_request: bool | None  # TEST in the subject and the text body; None: not asked

    @property
    def subject(self) -> str:
        return self.professional.subject


def parse(raw: bytes, limits: AttachmentLimits) -> ParsedMessage:
    """`raw` parsed once, its parts classified under `limits`. CPU-bound (base64 of the
    parts, zip central directories, magic bytes); bounded by the MIME bounds of
    policy/mime.py and of `limits`. Never raises."""
    tree = mime.parse(raw)
    headers = tree.headers()
    parts = mime_parts(tree, limits)
    attachments: tuple[Attachment, ...] | Decision
    if isinstance(parts, Decision):
        attachments = parts
    else:
        checked = check_message(parts, limits)
        attachments = checked if isinstance(checked, Decision) else tuple(checked)
        parts = tuple(parts)
    return ParsedMessage(tree, headers, professional_from_headers(headers), parts, attachments)
