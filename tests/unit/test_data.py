"""relay/smtp/data.py: DATA framing exactly as RFC 5321 §4.1.1.4 and §4.5.2."""
from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.headers import HeaderLimits, HeaderScanner
from relay.smtp.data import CHUNK, END_OF_DATA, Refused, TooBig, read_dot_data


async def _read(stream: bytes, limit: int = 10_000, eof: bool = False,
                pieces: int = 1) -> tuple[bytes | None, bytes]:
    reader = asyncio.StreamReader()
    step = max(len(stream) // pieces, 1)
    for i in range(0, len(stream), step):
        reader.feed_data(stream[i:i + step])
    if eof:
        reader.feed_eof()
    content = await asyncio.wait_for(read_dot_data(reader, limit), 5)
    rest = reader._buffer  # what the command loop will read next
    return content, bytes(rest)


async def test_empty_message_ends_at_once() -> None:
    assert await _read(b".\r\nQUIT\r\n") == (b"", b"QUIT\r\n")


async def test_one_line_message() -> None:
    assert await _read(b"Subject: x\r\n.\r\n") == (b"Subject: x\r\n", b"")


async def test_dot_stuffing_undone_on_every_line() -> None:
    content, _ = await _read(b"..first\r\nmid\r\n..\r\n...x\r\n.\r\n")
    assert content == b".first\r\nmid\r\n.\r\n..x\r\n"


async def test_pipelined_commands_after_the_dot_are_kept() -> None:
    content, rest = await _read(b"a\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n")
    assert content == b"a\r\n" and rest == b"MAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n"


@pytest.mark.parametrize("pieces", [1, 3, 7, 50])
async def test_terminator_split_across_reads(pieces: int) -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(2000))
    content, rest = await _read(body + b".\r\nQUIT\r\n", limit=10**6, pieces=pieces)
    assert content == body and rest == b"QUIT\r\n"


@pytest.mark.parametrize("smuggle", [b"x\n.\r\nMAIL FROM:<e@v>\r\n", b"x\r\n.\nMAIL FROM:<e@v>\r\n",
                                     b"x\r.\r\nMAIL FROM:<e@v>\r\n"])
async def test_bare_line_endings_do_not_end_data(smuggle: bytes) -> None:
    content, rest = await _read(smuggle + b"more\r\n.\r\n")
    # the data goes on past the bare line ending (only the line-leading dot is unstuffed)
    assert content == (b"\r\n" + smuggle + b"more\r\n").replace(b"\r\n.", b"\r\n")[2:]
    assert b"MAIL FROM" in content and rest == b""


async def test_over_the_limit_is_read_to_the_end_then_refused() -> None:
    body = b"A" * 998 + b"\r\n"
    reader = asyncio.StreamReader()
    reader.feed_data(body * 200 + b".\r\nQUIT\r\n")
    with pytest.raises(TooBig):
        await read_dot_data(reader, 50_000)
    assert bytes(reader._buffer) == b"QUIT\r\n"


async def test_limit_is_on_the_unstuffed_content() -> None:
    assert (await _read(b"12345678\r\n.\r\n", limit=10))[0] == b"12345678\r\n"
    with pytest.raises(TooBig):
        await _read(b"123456789\r\n.\r\n", limit=10)


async def test_hangup_mid_data() -> None:
    assert (await _read(b"Subject: x\r\nno end", eof=True))[0] is None


async def test_long_lines_accepted() -> None:
    line = b"x" * (3 * CHUNK) + b"\r\n"
    assert (await _read(line + b".\r\n", limit=10**6))[0] == line


async def test_progress_reported_for_every_chunk() -> None:
    calls = 0

    def tick() -> None:
        nonlocal calls
        calls += 1

    reader = asyncio.StreamReader()
    for _ in range(4):
        reader.feed_data(b"x" * 1000 + b"\r\n")
    reader.feed_data(b".\r\n")
    assert await read_dot_data(reader, 10**6, on_progress=tick) is not None
    assert calls >= 1


async def test_header_limits_refuse_after_the_end_of_data() -> None:
    reader = asyncio.StreamReader()
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(20))
    reader.feed_data(fields + b"\r\nbody\r\n.\r\nQUIT\r\n")
    with pytest.raises(Refused) as exc:
        await read_dot_data(reader, 10**6, headers=HeaderScanner(HeaderLimits(max_fields=10)))
    assert (exc.value.decision.code, exc.value.decision.status) == (554, "5.6.0")
    assert bytes(reader._buffer) == b"QUIT\r\n"  # read to the dot; the next command is intact
    reader = asyncio.StreamReader()
    reader.feed_data(fields + b"\r\n" + fields * 100 + b".\r\n")  # fields in the body are body
    assert await read_dot_data(reader, 10**6, headers=HeaderScanner(HeaderLimits(max_fields=20))) is not None


async def _trickle(reader: asyncio.StreamReader, data: bytes) -> None:
    """Feeds like a socket: a chunk at a time, when the previous one was read."""
    for i in range(0, len(data), CHUNK):
        while len(reader._buffer) > 0:  # type: ignore[attr-defined]
            await asyncio.sleep(0)
        reader.feed_data(data[i:i + CHUNK])


async def test_a_5_mb_header_line_is_never_held() -> None:
    # issue 10 item 6: a 5 MB header line was accepted (250); now it is refused while it
    # arrives, and the reader holds a chunk or two of it, never the line
    line = b"Subject: " + b"x" * (5 * 1024 * 1024) + b"\r\n"
    stream = line + b"\r\nbody\r\n.\r\nQUIT\r\n"
    reader = asyncio.StreamReader()
    tracemalloc.start()
    try:
        feeder = asyncio.create_task(_trickle(reader, stream))
        with pytest.raises(Refused) as exc:
            await read_dot_data(reader, 26_214_400, headers=HeaderScanner(HeaderLimits()))
        await feeder
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (exc.value.decision.code, exc.value.decision.status) == (552, "5.3.4")
    assert bytes(reader._buffer) == b"QUIT\r\n"
    assert peak < 1024 * 1024, peak  # the limit (100 KB) and a few chunks, not 5 MB
async def _read_piecewise(stream: bytes, limit: int, size: int) -> bytes | None:
    """The reader sees `size` bytes at a time, as from a slow TCP peer."""
    reader = asyncio.StreamReader()

    async def feed() -> None:
        for i in range(0, len(stream), size):
            reader.feed_data(stream[i:i + size])
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.ensure_future(feed())
    try:
        return await asyncio.wait_for(read_dot_data(reader, limit), 5)
    finally:
        await feeder


@pytest.mark.parametrize("size", [1, 2, 3, 7])
async def test_size_limit_does_not_depend_on_how_reads_split(size: int) -> None:
    # Found by tests/fuzz/fuzz_smtp_data.py (corpus/smtp_data/regress-limit-split): a
    # message of exactly the limit was refused when a read ended inside <CRLF>.<CRLF>,
    # and one over the limit only by its stuffing dots was refused or not by chance.
    exact = b"12345678\r\n"
    assert await _read_piecewise(exact + b".\r\n", limit=10, size=size) == exact
    assert await _read_piecewise(b".\r\n", limit=0, size=size) == b""
    stuffed = b"..\r\n" * 10  # 40 bytes on the wire, 30 once un-stuffed
    assert await _read_piecewise(stuffed + b".\r\n", limit=30, size=size) == b".\r\n" * 10
    with pytest.raises(TooBig):
        await _read_piecewise(exact + b".\r\n", limit=9, size=size)


# The reader looks for a "." before any multi-byte search (the terminator and every
# stuffing dot hold one): framing must be the reference's whatever the pieces, with dots
# at chunk edges, inside long dot-free runs (a base64 attachment), or nowhere.
_TOKENS = st.sampled_from([b"\r\n", b"\r\n.\r\n", b"\r\n..", b".\r\n", b"\n.\n", b"\r.\r", b"\n", b"\r",
                           b".", b"QUIT\r\n", b"A" * 76 + b"\r\n", b"x" * (CHUNK - 3), b"y" * 997])


def _reference(stream: bytes) -> tuple[bytes, bytes] | None:
    framed = b"\r\n" + stream
    end = framed.find(END_OF_DATA)
    if end < 0:
        return None
    return framed[:end + 2].replace(b"\r\n.", b"\r\n")[2:], framed[end + len(END_OF_DATA):]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(_TOKENS, max_size=40), size=st.sampled_from([1, 2, 3, 5, 77, 4096, CHUNK - 1, CHUNK + 1]))
def test_framing_is_the_reference_whatever_the_dots_and_pieces(tokens: list[bytes], size: int) -> None:
    stream = b"".join(tokens)

    reader_result = asyncio.run(_read_with_rest(stream, size))
    expected = _reference(stream)
    if expected is None:
        assert reader_result[0] is None
    else:
        assert reader_result == expected


async def _read_with_rest(stream: bytes, size: int) -> tuple[bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=2**22)

    async def feed() -> None:
        for i in range(0, len(stream), size):
            reader.feed_data(stream[i:i + size])
            await asyncio.sleep(0)  # the reader sees this piece alone
        reader.feed_eof()

    feeder = asyncio.ensure_future(feed())
    try:
        content = await asyncio.wait_for(read_dot_data(reader, 10**9), 30)
    finally:
        await feeder
    return content, bytes(reader._buffer)
