"""The read buffer asyncio gives every TLS connection (issue 12: 10,000 IDLE sessions).

asyncio's SSLProtocol allocates, per connection, a zero-filled 256 KiB bytearray for the
ciphertext it reads (asyncio/sslproto.py, max_size): 10,000 idle sessions held 2.5 GiB
of resident memory for it alone. One TLS record carries at most 16 KiB of plaintext
(RFC 8446 §5.1, RFC 5246 §6.2.1) plus its expansion (at most 256 bytes in TLS 1.3,
2,048 in TLS 1.2, RFC 5246 §6.2.3), so a buffer of one record loses nothing but a few
more reads on large uploads (an APPEND of 25 MB: about 1,500 reads instead of 100).

The size is a class attribute of the standard library: setting it applies to every TLS
connection the process opens afterwards (IMAP, SMTP, web), which is what we want."""
from __future__ import annotations

import asyncio.sslproto

TLS_RECORD_BUFFER = 16 * 1024 + 2048  # one record's plaintext and its largest expansion


def shrink_tls_read_buffer(size: int = TLS_RECORD_BUFFER) -> None:
    """Make the per-connection TLS read buffer size bytes (never more than asyncio's own)."""
    proto = asyncio.sslproto.SSLProtocol
    if size < proto.max_size:
        proto.max_size = size
