"""The client side of a Session driven over a socket pair."""
from __future__ import annotations

import asyncio


async def until_tagged(reader: asyncio.StreamReader, tag: bytes) -> list[bytes]:
    """The lines up to and including the tagged reply to `tag`."""
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 30)
        assert line, "connection closed"
        lines.append(line.rstrip(b"\r\n"))
        if line.startswith(tag + b" "):
            return lines
