"""Issue 12 §3: fewer round trips per IMAP command. STATUS and APPEND read a folder's
counts, RECENT and subscription in one query (mailbox_store/folders.py); a command's
responses leave in one write with its tagged reply (relay/imap/session.py)."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store, sqlite_url
from policy.recipients import MailboxState
from relay.imap.session import HOLD_MAX, Session

INS = "279035121518989"


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = await Store.open(sqlite_url(tmp_path / "s.db"), MasterKey.generate(tmp_path / "k"))
    yield s
    await s.close()


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\nFrom: a@b.fr\r\n\r\nbody {n}\r\n".encode()


async def test_folder_counts_recent_and_subscription_in_one_query(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(3):
        await store.deliver([mb], msg(i))
    await store.store_flags(mb.id, "INBOX", [1], "+", ["\\Seen"])
    await store.set_subscribed(mb.id, "INBOX", True)
    queries: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement != "BEGIN":  # the read transaction's own (store._install_sqlite_pragmas)
            queries.append(statement)

    event.listen(store.reader.engine, "before_cursor_execute", count)  # IMAP reads: imapreads.py
    try:
        f = await store.folder(mb.id, "INBOX")
    finally:
        event.remove(store.reader.engine, "before_cursor_execute", count)
    assert f is not None
    assert len(queries) == 1, queries
    assert (f.messages, f.unseen, f.recent, f.subscribed) == (3, 2, 3, True)
    # RECENT follows the folder's claim mark, as recent_count does
    await store.claim_recent(f.id, 3)
    f = await store.folder(mb.id, "INBOX")
    assert f is not None and f.recent == 1 == await store.recent_count(f.id)
    await store.set_subscribed(mb.id, "INBOX", False)
    listed = {x.name: x for x in await store.list_folders(mb.id)}
    assert listed["INBOX"].subscribed is False and listed["INBOX"].recent == 1
    assert all(x.recent == 0 and x.messages == 0 for n, x in listed.items() if n != "INBOX")


class _Writes:
    """A real StreamWriter (over a socketpair) whose write() calls are counted."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.calls: list[bytes] = []
        inner = writer.write

        def write(data: bytes) -> None:
            self.calls.append(bytes(data))
            inner(data)
        writer.write = write  # type: ignore[method-assign]


async def _session() -> tuple[Session, _Writes, asyncio.StreamReader, asyncio.StreamWriter]:
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=a)
    peer_reader, peer_writer = await asyncio.open_connection(sock=b)
    server = SimpleNamespace(config=SimpleNamespace(imap_command_burst=10, imap_command_rate=10.0))
    return Session(server, reader, writer, tls=True), _Writes(writer), peer_reader, peer_writer  # type: ignore[arg-type]


async def test_a_commands_lines_leave_with_its_tagged_reply_in_one_write() -> None:
    s, w, peer, peer_writer = await _session()
    s._held = bytearray()
    await s.send(b"* 1 EXISTS", b"* 0 RECENT")
    await s.send()  # an empty update list: nothing written either
    await s.send(b"* FLAGS ()")
    assert w.calls == []
    await s.send(b"a1 OK done", flush=True)
    assert w.calls == [b"* 1 EXISTS\r\n* 0 RECENT\r\n* FLAGS ()\r\na1 OK done\r\n"]
    assert s._held is None
    await s.send(b"* later")  # outside a command: written at once
    assert w.calls[-1] == b"* later\r\n"
    got = await asyncio.wait_for(peer.readexactly(len(b"".join(w.calls))), 10)
    assert got.endswith(b"a1 OK done\r\n* later\r\n")
    s.writer.close()


async def test_a_continuation_request_is_never_held() -> None:
    s, w, peer, peer_writer = await _session()
    s._held = bytearray()
    await s.send(b"* 2 EXISTS")
    await s.send(b"+ idling")  # the client answers it: it and what came before go now
    assert w.calls == [b"* 2 EXISTS\r\n+ idling\r\n"]
    await s.send(b"* 3 EXISTS")  # inside IDLE: each update at once
    assert w.calls[-1] == b"* 3 EXISTS\r\n"
    s.writer.close()


async def test_held_responses_are_bounded_and_written_on_abort() -> None:
    s, w, peer, peer_writer = await _session()
    s._held = bytearray()
    line = b"* 1 FETCH (" + b"x" * 1000 + b")"
    reading = asyncio.ensure_future(peer.readexactly((len(line) + 2) * (HOLD_MAX // 1000 + 5)))
    for _n in range(HOLD_MAX // 1000 + 5):
        await s.send(line)
    assert len(w.calls) == 1 and len(w.calls[0]) >= HOLD_MAX  # written once the bound is reached
    assert s._held is not None and 0 < len(s._held) < HOLD_MAX
    s._unhold()  # the command ends without its tagged reply (Bye): nothing held is lost
    assert s._held is None and len(b"".join(w.calls)) == (len(line) + 2) * (HOLD_MAX // 1000 + 5)
    await asyncio.wait_for(reading, 10)
    s.writer.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
async def test_a_nagle_clients_literal_is_not_stalled_by_a_delayed_ack() -> None:
    """imaplib (Nagle on) sends a literal and the CRLF after it in two writes: the CRLF
    waits for the literal's ACK, which Linux delays 40 ms (TCP_DELACK_MIN) when the
    server has nothing to send. The session asks for quick ACKs while a command's
    literal is coming (Session._quickack). Real TCP on loopback; without it every try
    took 40 ms or more, with it about 1 ms, so the median of five is a wide margin."""
    got: asyncio.Queue[Session] = asyncio.Queue()
    config = SimpleNamespace(imap_command_burst=10, imap_command_rate=10.0, imap_idle_timeout=30,
                             imap_max_line=8192, imap_max_literal=65536, imap_literal_timeout=30)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await got.put(Session(SimpleNamespace(config=config), reader, writer, tls=False))  # type: ignore[arg-type]

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    client = socket.create_connection(("127.0.0.1", port))  # a blocking socket: Nagle on
    s: Session | None = None
    try:
        s = await asyncio.wait_for(got.get(), 10)
        took = []
        for i in range(5):
            def send_command() -> None:
                client.sendall(f"a{i} LOGIN {{5}}\r\n".encode())
                assert client.recv(100).startswith(b"+ ")
                client.sendall(b"user1")  # the literal, then the rest of the line: two writes
                client.sendall(b" pass\r\n")
            start = loop.time()
            sending = loop.run_in_executor(None, send_command)
            line = await asyncio.wait_for(s.read_command(), 10)
            took.append(loop.time() - start)
            await sending
            assert line == f"a{i} LOGIN {{5}}\r\nuser1 pass".encode()
        assert sorted(took)[2] < 0.025, took
    finally:
        client.close()
        if s is not None:
            s.writer.close()
        server.close()
        await server.wait_closed()
