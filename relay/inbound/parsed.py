"""A received message parsed once (issue 15 item 1): the header section, the facts
the policy rules read from it, and its decoded subject. Immutable and picklable, so
that the parse-and-decide step can run in a worker thread or another process.

The MIME tree and the attachments' classification are read by
dossier_bridge.dossier.inspect_message from the same bytes, with these headers handed
in (not parsed a second time)."""
from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from policy.conversation import ProfessionalMessage, professional_from_headers
from policy.headers import header_block, parse_headers


@dataclass(frozen=True)
class ParsedMessage:
    head: bytes  # the header section as received, with its final CRLF (RFC 5322 §2.1)
    headers: Message  # the same, parsed (compat32): read only, never re-serialised
    professional: ProfessionalMessage  # From, Reply-To, ids and the decoded subject

    @property
    def subject(self) -> str:
        """The subject decoded once (RFC 2047), as the [FIN] rule reads it."""
        return self.professional.subject


def parse(raw: bytes) -> ParsedMessage:
    """The header section of `raw`, parsed once. CPU-bound, bounded by the header
    limits the SMTP front applied while receiving (policy/headers.HeaderScanner)."""
    headers = parse_headers(raw)
    return ParsedMessage(header_block(raw), headers, professional_from_headers(headers))
