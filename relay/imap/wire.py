"""Writing IMAP values (RFC 3501 §4, RFC 9051 §4): atoms, quoted strings, literals,
NIL, parenthesised lists, dates. Every server response is built from these, so a
value a client controls can never break the framing."""
from __future__ import annotations

import datetime as dt

NIL = b"NIL"
_QUOTABLE_MAX = 1024  # longer values go as literals
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def string(value: bytes | str) -> bytes:
    """A quoted string when it can be one (no CR, LF, NUL, 8-bit, short), else a literal."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= _QUOTABLE_MAX and all(0x20 <= b < 0x7F for b in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def nstring(value: bytes | str | None) -> bytes:
    return NIL if value is None else string(value)


def astring(value: str) -> bytes:
    """An atom when the value is a plain atom (RFC 3501 ATOM-CHAR), else a string."""
    data = value.encode("utf-8")
    if data and all(0x21 <= b < 0x7F and b not in b'(){ %*"\\]' for b in data):
        return data
    return string(data)


def plist(items: list[bytes] | tuple[bytes, ...]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def date_time(when: dt.datetime) -> bytes:
    """RFC 3501 date-time: "23-Nov-2026 18:11:14 +0000"."""
    off = when.utcoffset() or dt.timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (f'"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} '
            f'{when:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}"').encode("ascii")
