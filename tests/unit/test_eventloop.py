"""The daemon's event loop (relay/daemon/eventloop.py): `serve` runs on uvloop's, and
what the daemon relies on from asyncio works there: streams over TLS with STARTTLS
(start_tls), the transport's socket options (TCP_QUICKACK, relay/imap/session.py),
executors and signal handlers."""
from __future__ import annotations

import asyncio
import signal
import socket
import ssl
from pathlib import Path

import uvloop

from relay.daemon import eventloop


def test_run_returns_the_result_on_a_uvloop_loop() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(main()).startswith("uvloop")


def test_what_the_daemon_uses_works_on_uvloop(dev_instance: Path) -> None:
    pki = dev_instance / "pki"
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    client_ctx = ssl.create_default_context(cafile=pki / "ca.pem")
    client_ctx.check_hostname = False

    async def main() -> tuple[bytes, bool, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, uvloop.Loop)
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, got.set)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await reader.readline() == b"STARTTLS\r\n"
            writer.write(b"go\r\n")
            await writer.drain()
            await writer.start_tls(server_ctx)  # as aiosmtpd and the IMAP server upgrade
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_QUICKACK", socket.TCP_NODELAY), 1)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\r\n")
        assert await reader.readline() == b"go\r\n"
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"hello\r\n")
        echoed = await reader.readline()
        tls = writer.get_extra_info("ssl_object") is not None
        writer.close()
        server.close()
        doubled = await loop.run_in_executor(None, lambda: 21 * 2)
        signal.raise_signal(signal.SIGUSR1)
        await asyncio.wait_for(got.wait(), 5)
        loop.remove_signal_handler(signal.SIGUSR1)
        return echoed, tls, doubled

    assert eventloop.run(main()) == (b"HELLO\r\n", True, 42)
