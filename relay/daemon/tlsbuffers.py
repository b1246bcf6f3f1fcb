"""The read buffer asyncio gives every TLS connection, sized for one TLS record: set
once per process that serves TLS (the daemon, relay/daemon/serve.py; an IMAP worker,
imapworker.py).

asyncio gives every TLS connection a 256 KiB read buffer (SSLProtocol.max_size), a
zero-filled bytearray: all its pages are resident from the handshake on, idle or not
(1,000 idle TLS connections: 282 KiB each; 42 KiB with 18 KiB). 10,000 IMAP IDLE
sessions would hold 640 MB of it with 64 KiB (issue 12). A TLS record carries at most
16 KiB of plaintext plus 2 KiB of expansion (RFC 5246 §6.2.3, RFC 8446 §5.2): one record
per read."""
from __future__ import annotations

import asyncio.sslproto

TLS_READ_BUFFER = 16 * 1024 + 2048


def limit_tls_buffers() -> None:
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER  # type: ignore[attr-defined]
