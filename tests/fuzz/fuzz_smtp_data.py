"""Fuzz harness for the SMTP DATA reader (relay/smtp/data.py), with atheris.

The input is a byte stream a client sends after `354`, cut into TCP-like pieces, and a
size limit. The reader's contract, checked against a plain reference of RFC 5321
§4.1.1.4 / §4.5.2 (the data ends at the first <CRLF>.<CRLF>, counting the CRLF that
ended the DATA command; a line-leading dot is removed):

- no terminator before the peer hangs up: None;
- else the un-stuffed content, or TooBig exactly when that content is over the limit
  (RFC 1870 §3: the size does not count the stuffing dots), whatever the cut;
- the bytes after the terminator (pipelined commands, RFC 2920) are left in the reader,
  byte for byte, for the command loop; nothing else is raised.

The pieces are what makes this harness worth having: framing that depends on where
reads split is what SMTP smuggling feeds on.

    python tests/fuzz/fuzz_smtp_data.py -max_total_time=600 /tmp/data-work
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import instrumented, main  # noqa: E402

with instrumented("relay.smtp.data"):
    from relay.smtp import data as data_mod  # noqa: E402

# Small limits, so that inputs of a few kB cross them; and one that never binds.
LIMITS = (0, 1, 2, 3, 4, 5, 8, 16, 64, 256, 1000, 10**9)
_LOOP = asyncio.new_event_loop()


def reference(stream: bytes) -> tuple[bytes, bytes] | None:
    """(un-stuffed content, bytes after the terminator), None without a terminator."""
    framed = b"\r\n" + stream
    end = framed.find(data_mod.END_OF_DATA)
    if end < 0:
        return None
    return framed[:end + 2].replace(b"\r\n.", b"\r\n")[2:], framed[end + len(data_mod.END_OF_DATA):]


def split(data: bytes) -> tuple[int, list[int], bytes]:
    """The limit, the sizes of the pieces (repeated), and the stream."""
    if len(data) < 4:
        return 10**9, [1], data
    sizes = [1 + b % 97 if b < 250 else data_mod.CHUNK + b for b in data[1:4]]
    return LIMITS[data[0] % len(LIMITS)], sizes, data[4:]


async def _run(limit: int, sizes: list[int], stream: bytes) -> tuple[str, bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=2**20)

    async def feed() -> None:
        pos, n = 0, 0
        while pos < len(stream):
            size = sizes[n % len(sizes)]
            reader.feed_data(stream[pos:pos + size])
            pos, n = pos + size, n + 1
            await asyncio.sleep(0)  # the reader sees this piece alone
        reader.feed_eof()

    feeder = asyncio.ensure_future(feed())
    try:
        content = await data_mod.read_dot_data(reader, limit)
        outcome = "content" if content is not None else "hangup"
    except data_mod.TooBig:
        content, outcome = None, "toobig"
    await feeder
    rest = bytes(reader._buffer)  # what the command loop reads next
    return outcome, content, rest


def test_one_input(data: bytes) -> None:
    limit, sizes, stream = split(data)
    outcome, content, rest = _LOOP.run_until_complete(_run(limit, sizes, stream))
    expected = reference(stream)
    if expected is None:
        assert outcome == "hangup", (outcome, limit, sizes)
        return
    body, after = expected
    assert rest == after, ("pipelined bytes changed", rest[:80], after[:80], sizes)
    if len(body) > limit:
        assert outcome == "toobig", (outcome, len(body), limit, sizes)
    else:
        assert outcome == "content", (outcome, len(body), limit, sizes)
        assert content == body, (content[:80] if content else content, body[:80], sizes)


DICTIONARY = [b"\r\n", b"\r\n.\r\n", b"\r\n..", b".\r\n", b"\n.\n", b"\r.\r", b"\n", b"\r", b".",
              b"QUIT\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n"]

if __name__ == "__main__":
    main(sys.argv, "smtp_data", test_one_input, DICTIONARY)
