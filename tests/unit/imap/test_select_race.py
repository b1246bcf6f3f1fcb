"""Issue 12 §5: a message delivered between SELECT's snapshot and the view being in
place is announced (the session listens first, then snapshots), never lost."""
from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.imap.idlefan import FolderFan
from relay.imap.session import AUTH, Session
from tests.unit.imap.peer import until_tagged

INS = "279035121518989"


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\nFrom: a@b.fr\r\nMessage-ID: <m{n}@b.fr>\r\n\r\nbody {n}\r\n".encode()


async def test_a_delivery_during_select_is_announced(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    await store.deliver([mb], msg(1))
    real_snapshot = store.snapshot
    delivered: list[Any] = []

    async def snapshot_then_delivery(*args: Any, **kwargs: Any) -> Any:
        snap = await real_snapshot(*args, **kwargs)
        if not delivered and not kwargs.get("since_uid"):  # once: SELECT's own snapshot
            delivered.append(await store.deliver([mb], msg(2)))  # committed and published now
        return snap

    monkeypatch.setattr(store, "snapshot", snapshot_then_delivery)
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=a)
    peer_reader, peer_writer = await asyncio.open_connection(sock=b)
    config = SimpleNamespace(imap_command_burst=100, imap_command_rate=100.0, imap_command_timeout=60.0)
    server = SimpleNamespace(config=config, store=store, fan=FolderFan(store.feed))
    s = Session(server, reader, writer, tls=True)  # type: ignore[arg-type]
    s.user, s.state = mb, AUTH
    try:
        await s.execute(b"a SELECT INBOX")
        lines = await until_tagged(peer_reader, b"a")
        assert b"* 1 EXISTS" in lines and lines[-1].startswith(b"a OK")
        assert delivered, "the delivery did not happen inside SELECT"
        await s.execute(b"b NOOP")
        lines += await until_tagged(peer_reader, b"b")
        assert b"* 2 EXISTS" in lines  # announced with SELECT's reply or the next command's
        assert s.selected is not None and s.selected.uids == [1, 2]
    finally:
        server.fan.stop()
        writer.close()
        peer_writer.close()
