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
