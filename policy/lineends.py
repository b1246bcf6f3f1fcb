"""The line endings of a raw message: SMTP carries lines ended by CRLF only (RFC 5321
§2.3.8), and a bare CR or LF is how SMTP smuggling hides a second message. Pure."""
from __future__ import annotations


def has_bare_line_ending(data: bytes) -> bool:
    """True when a CR or LF is not part of a CRLF pair (RFC 5321 §2.3.8).
    Three C-speed counts instead of a regex scan: 6% of the MX's CPU at 10 KB."""
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs
