"""The path of MAIL FROM and RCPT TO, read fast in the common case.

aiosmtpd reads every path with the stdlib's RFC 5322 header parser
(email._header_value_parser.get_angle_addr), and defines a typing.Protocol class on
each call: about 3% of the MX's event-loop time at 10 KB messages (py-spy, issue 15).
A path that is a plain RFC 5321 §4.1.2 Mailbox in angle brackets, a Dot-string local
part and a domain of letters, digits and hyphens, is read here with one regex; it
gives exactly what aiosmtpd's parser gives (tests/unit/smtp/test_addrparse.py compares
both). Anything else (quoted local parts, address literals, comments, obsolete
syntax, non-ASCII) falls back to aiosmtpd's own reading.
"""
from __future__ import annotations

import re

# RFC 5321 §4.1.2 Atom: RFC 5322 atext, ASCII only
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


def plain_path(arg: str) -> tuple[str, str] | None:
    """(address, what follows the closing bracket) for a plain <local@domain> path,
    else None (the caller reads it the general way)."""
    m = _PLAIN_PATH.match(arg)
    if m is None:
        return None
    # the header parser also takes the folding white space after ">", and a comment
    rest = arg[m.end():].lstrip(" \t")
    if rest.startswith("("):
        return None
    return m.group(1), rest
