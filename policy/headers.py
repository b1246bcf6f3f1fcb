"""The header section of a message (RFC 5322 §2.1: up to the first empty line), parsed
alone: asking the stdlib parser for headers only still makes it read the whole body
line by line (measured: 3 ms for a 500 KB attachment, per parse, on the MX's path)."""
from __future__ import annotations

from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32


def header_block(raw: bytes) -> bytes:
    """The header lines with their final CRLF, without the empty line and the body."""
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[:end + 2]


def parse_headers(raw: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))


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
