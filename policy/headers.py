"""The header section of a message (RFC 5322 §2.1: up to the first empty line), parsed
alone, by the one MIME parser of the code base (policy/mime.py): parsing a whole
message to read its headers would walk every part of a 25 MB body."""
from __future__ import annotations

import re
from dataclasses import dataclass

from policy import mime
from policy.decisions import Decision


def header_block(raw: bytes) -> bytes:
    """The header lines with their final CRLF, without the empty line and the body."""
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[:end + 2]


def parse_headers(raw: bytes) -> mime.Headers:
    """The header fields of `raw` (the message, or its header section alone)."""
    head = header_block(raw)
    return mime.parse(head + b"\r\n" if head is not raw else head).headers()


def without_fields(raw: bytes, names: set[str]) -> bytes:
    """The message without the header fields of these (lower-case) names, folded
    continuation lines included (RFC 5322 §2.2.3); the body untouched."""
    head = header_block(raw)
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower().decode("latin-1") in names
        if not dropping:
            kept.append(line)
    return b"".join(kept) + raw[len(head):]


# --- Limits on the header section, checked while the message arrives ----------------
#
# Postfix keeps at most header_size_limit (100 KB) of one header field and has no
# separate field count; we refuse instead of truncating (a truncated To: or
# Content-Type: changes what the message means), and also bound the number of fields
# and the section as a whole, so that a 5 MB header line or 100,000 fields are refused
# while they arrive, with no more held than one field.

@dataclass(frozen=True)
class HeaderLimits:
    """Bounds on the header section of a message (relay.toml [mx])."""

    max_field_bytes: int = 102_400  # one field, its folded lines included (Postfix header_size_limit)
    max_fields: int = 1_000
    max_section_bytes: int = 1_048_576  # the whole header section, up to the empty line


def field_too_big(limits: HeaderLimits) -> Decision:
    # RFC 3463 X.3.4 "message too big for system", as for the size of the message
    return Decision(552, "5.3.4", f"Champ d'en-tete trop long ({limits.max_field_bytes} octets au plus)",
                    f"Header field too long ({limits.max_field_bytes} bytes at most)", "header_field_too_big")


def section_too_big(limits: HeaderLimits) -> Decision:
    return Decision(552, "5.3.4", f"En-tete du message trop volumineux ({limits.max_section_bytes} octets au plus)",
                    f"Message header section too large ({limits.max_section_bytes} bytes at most)",
                    "header_too_big")


def too_many_fields(limits: HeaderLimits) -> Decision:
    # RFC 3463 X.6.0 "other or undefined media error": the content, not its size
    return Decision(554, "5.6.0", f"Trop de champs d'en-tete ({limits.max_fields} au plus)",
                    f"Too many header fields ({limits.max_fields} at most)", "too_many_header_fields")


# What the stdlib parser takes for a header line (email.feedparser.headerRE): a field
# name of printable US-ASCII but ":" (RFC 5322 §2.2, §3.6.8), or an mbox "From " line
# (the parser keeps reading headers after one).
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]*")
_EMPTY, _FIELD, _FOLDED, _BODY = "empty", "field", "folded", "body"


def _line_kind(head: bytes, complete: bool) -> str | None:
    """What the line beginning with `head` is; None until more of it is known."""
    if head in (b"\n", b"\r\n"):
        return _EMPTY
    if head == b"\r" and not complete:
        return None
    if head[:1] in (b" ", b"\t"):  # RFC 5322 §2.2.3: a folded continuation
        return _FOLDED
    name_end = _FIELD_NAME.match(head).end()  # type: ignore[union-attr]
    if name_end == len(head):
        return None
    if head[name_end:name_end + 1] == b":" or head.startswith(b"From "):
        return _FIELD
    return _BODY  # the parser takes a line that is no field for the start of the body


class HeaderScanner:
    """Fed the message as it arrives (any chunking), it counts the header section's
    fields and bytes and returns the refusal as soon as a limit is passed. It keeps
    nothing of the content but the start of the current line, until that line is
    known to be a field, a folded line, the empty line or body."""

    def __init__(self, limits: HeaderLimits) -> None:
        self.limits = limits
        self.fields = 0
        self.section_bytes = 0
        self.done = False  # the header section has ended
        self.refusal: Decision | None = None
        self._field_bytes = 0
        self._line_bytes = 0
        self._head: bytearray | None = bytearray()  # None once the line's kind is known

    def feed(self, data: bytes) -> Decision | None:
        pos = 0
        while pos < len(data) and not self.done and self.refusal is None:
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl + 1
            n = end - pos
            self.section_bytes += n
            self._line_bytes += n
            if self._head is None:
                self._field_bytes += n
            else:
                self._head += data[pos:end]
                kind = _line_kind(bytes(self._head), nl >= 0)
                if kind is None:
                    if len(self._head) > self.limits.max_field_bytes:
                        self.refusal = field_too_big(self.limits)
                elif kind in (_EMPTY, _BODY):
                    self.done = True
                    if kind == _BODY:
                        self.section_bytes -= self._line_bytes
                else:
                    self._head = None
                    if kind == _FIELD:
                        self.fields += 1
                        self._field_bytes = self._line_bytes
                        if self.fields > self.limits.max_fields:
                            self.refusal = too_many_fields(self.limits)
                    else:
                        self._field_bytes += self._line_bytes
            if self.refusal is None and not self.done:
                if self._field_bytes > self.limits.max_field_bytes:
                    self.refusal = field_too_big(self.limits)
                elif self.section_bytes > self.limits.max_section_bytes:
                    self.refusal = section_too_big(self.limits)
            if nl >= 0:  # the line ended: the next one starts unknown
                self._line_bytes = 0
                if not self.done:
                    self._head = bytearray()
            pos = end
        return self.refusal
