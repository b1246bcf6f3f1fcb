"""Reading the DATA of an SMTP transaction in large chunks.

aiosmtpd reads DATA one line at a time, a few microseconds of Python per line: for a
500 KB message (6,700 lines of base64) that was about 40% of the MX's event-loop time.
Here the stream is read in 64 KiB chunks and the end of data is searched with
bytes.find, both C-speed.

Framing is exactly RFC 5321's and nothing looser, because framing differences between
two MTAs are what SMTP smuggling exploits: the data ends only at <CRLF>.<CRLF> (§4.1.1.4),
and the CRLF that ended the DATA command counts as the start of the first line, so an
empty message (".<CRLF>" at once) ends too. Dot-stuffing is undone as §4.5.2 says
(a leading "." of any line is removed, as aiosmtpd does). A bare CR or LF is left in
place for the handler to refuse (§2.3.8).

Text lines are not limited to 1,000 octets here (§4.5.3.1.6 allows refusing them;
Postfix accepts them too): professional software that emits a long HTML line should
not have a medical message bounced for it. The whole message is bounded by the SIZE
limit, and memory by that limit plus one chunk (plus a third at most when every line is
a stuffed dot, since the limit is on the un-stuffed size). The header section is checked as it
arrives (policy/headers.HeaderScanner): once a limit is passed, nothing more is kept.

A refused message is still read to its end before the answer (§4.2.5: the reply comes
after the final dot; the stream stays in step for the next command).

CPU: the terminator and every stuffing dot hold a ".", and a base64 attachment (most of
a large professional message) holds none. So each new chunk is first searched for a "."
(memchr: a few microseconds for 64 KiB) and the slower multi-byte searches run only from
the first one found: on a 500 KB message with a PDF that took the reader from three
whole passes (end search, dot count, un-stuffing search: about 1 ms) to almost nothing,
while plain text, where dots are everywhere, costs what it did.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from policy.decisions import BYTES_IN_FLIGHT, MESSAGE_TOO_BIG, Decision
from policy.headers import HeaderScanner

END_OF_DATA = b"\r\n.\r\n"
CHUNK = 65536


def _find_end(buf: bytearray, start: int) -> int:
    """buf.find(END_OF_DATA, start), searched only from the first "." at or after
    start + 2 (a terminator starting at or after `start` has its dot there)."""
    dot = buf.find(b".", start + 2)
    return -1 if dot < 0 else buf.find(END_OF_DATA, dot - 2)


def _stuffing(buf: bytearray, start: int, stop: int | None = None) -> int:
    """buf.count(b"\\r\\n.", start, stop), counted only from the first "." (as _find_end)."""
    end = len(buf) if stop is None else stop
    dot = buf.find(b".", start + 2, end)
    return 0 if dot < 0 else buf.count(b"\r\n.", dot - 2, end)


class Refused(Exception):
    """The data was read to its end and discarded; `decision` says why."""

    def __init__(self, decision: Decision):
        super().__init__(decision.rule)
        self.decision = decision


class TooBig(Refused):
    """The data exceeded the size limit."""

    def __init__(self) -> None:
        super().__init__(MESSAGE_TOO_BIG)


async def read_dot_data(reader: asyncio.StreamReader, limit: int,
                        on_progress: Callable[[], None] | None = None,
                        headers: HeaderScanner | None = None,
                        fits: Callable[[int], bool] | None = None) -> bytes | None:
    """The un-stuffed message, with its final CRLF; None if the peer hung up mid-data.
    Raises TooBig over `limit`, Refused when `headers` finds the header section over
    its limits, or when `fits` (the bytes in flight, budget.py) says the bytes read so
    far cannot be kept.

    Bytes the client pipelined after the end of data (RFC 2920: QUIT, the next MAIL)
    are handed back to the reader for the command loop.
    """
    buf = bytearray(b"\r\n")
    start = 0
    overflow = False
    refusal: Decision | None = None
    # Stuffing dots seen so far (each "\r\n." in buf[:counted]): the limit is on the
    # un-stuffed size (RFC 1870 §3), and the overflow below must not depend on where
    # reads split, so it waits until that size is certain to be over it.
    dots = counted = 0
    while (end := _find_end(buf, start)) < 0:
        dots += _stuffing(buf, counted)
        counted = max(len(buf) - 2, counted)
        # the end of data is not in buf: the content is at least len(buf) - 4 bytes
        if len(buf) - (len(END_OF_DATA) - 1) - dots > limit:
            overflow = True
        if overflow or refusal is not None:
            # refused: keep reading to the end of data, keep only what may hold the
            # first bytes of the terminator (RFC 5321 §4.2.5: answer after the dot)
            del buf[:-(len(END_OF_DATA) - 1)]
        start = max(len(buf) - (len(END_OF_DATA) - 1), 0)
        chunk = await reader.read(CHUNK)
        if not chunk:
            return None
        if on_progress is not None:
            on_progress()
        if headers is not None and refusal is None and not headers.done:
            refusal = headers.feed(chunk)
        buf += chunk
        if fits is not None and refusal is None and not overflow and not fits(len(buf)):
            refusal = BYTES_IN_FLIGHT
    leftover = bytes(buf[end + len(END_OF_DATA):])
    if leftover:
        # StreamReader has no unread(); aiosmtpd itself manages this buffer
        # (it clears it after STARTTLS).
        reader._buffer[:0] = leftover  # type: ignore[attr-defined]
    if overflow:
        raise TooBig
    if refusal is not None:
        raise Refused(refusal)
    # buf = CRLF + content + CRLF . CRLF: undo dot-stuffing on every line start.
    # Never more than two copies of the message at once (issue 15 §2): buf, and
    # either its un-stuffed copy or the bytes returned, worked on in place.
    # (the stuffing dots of the last chunk were not counted in the loop)
    del buf[end + 2:]
    if dots or _stuffing(buf, counted):
        buf = buf.replace(b"\r\n.", b"\r\n")  # the old buf is dropped here
    del buf[:2]
    if len(buf) > limit:
        raise TooBig
    return bytes(buf)
