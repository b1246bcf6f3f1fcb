"""Issue 12 §3: FETCH ENVELOPE / BODYSTRUCTURE / BODY rendered once per message and
cached by blob id (relay/imap/fetchcache.py): the second FETCH 1:* (FLAGS ENVELOPE)
decrypts nothing, answers the same bytes as the uncached path, and is still audited."""
from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.imap import fetch as fetchmod
from relay.imap.idlefan import FolderFan
from relay.imap.fetchcache import DerivedCache
from relay.imap.session import AUTH, Session
from relay.imap.types import FetchAtt
from tests.unit.imap.peer import until_tagged

INS = "279035121518989"


def msg(n: int) -> bytes:
    return (f"From: Dr Martin <dr.martin@test-operator.mssante.fr>\r\nTo: <{INS}@patient.mssante.fr>\r\n"
            f"Subject: =?utf-8?q?Compte_rendu_{n}?=\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
            f"Message-ID: <m{n}@b.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"body {n}\r\n").encode()


def test_the_cache_is_bounded_in_bytes_and_answers_only_whole_entries() -> None:
    cache = DerivedCache(max_bytes=10_000)
    cache.put("blob-a", {b"ENVELOPE": b"x" * 100})
    assert cache.get("blob-a", frozenset({b"ENVELOPE"})) == {b"ENVELOPE": b"x" * 100}
    assert cache.get("blob-a", frozenset({b"ENVELOPE", b"BODYSTRUCTURE"})) is None  # part missing
    cache.put("blob-a", {b"BODYSTRUCTURE": b"y"})
    assert cache.get("blob-a", frozenset({b"ENVELOPE", b"BODYSTRUCTURE"})) is not None
    for i in range(200):
        cache.put(f"blob-{i}", {b"ENVELOPE": b"z" * 500})
    assert cache.size <= 10_000 and 0 < len(cache) < 200
    assert cache.get("blob-199", frozenset({b"ENVELOPE"})) is not None  # the newest stay
    assert cache.get("blob-a", frozenset({b"ENVELOPE"})) is None  # the oldest went


async def test_second_fetch_envelope_decrypts_nothing_and_answers_the_same(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(5):
        await store.deliver([mb], msg(i))
    raws = {u: await store.fetch_raw(INS, "INBOX", u) for u in range(1, 6)}
    decrypted: list[int] = []
    real = store.fetch_raw_many

    async def counting(ins: str, folder: str, uids: Any) -> Any:
        decrypted.extend(uids)
        return await real(ins, folder, uids)

    monkeypatch.setattr(store, "fetch_raw_many", counting)
    audited: list[int] = []

    async def offload(work: Any) -> Any:
        return await asyncio.to_thread(work)

    async def audit_read(session: Any, count: int) -> None:
        audited.append(count)

    server = SimpleNamespace(
        config=SimpleNamespace(imap_command_burst=100, imap_command_rate=100.0, imap_command_timeout=60.0),
        store=store, derived_cache=DerivedCache(), offload=offload, fan=FolderFan(store.feed),
        audit_read=audit_read)
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=a)
    peer_reader, peer_writer = await asyncio.open_connection(sock=b)
    s = Session(server, reader, writer, tls=True)  # type: ignore[arg-type]
    s.user, s.state = mb, AUTH
    try:
        await s.execute(b"a EXAMINE INBOX")
        await until_tagged(peer_reader, b"a")
        await s.execute(b"b FETCH 1:* (FLAGS ENVELOPE)")
        first = await until_tagged(peer_reader, b"b")
        assert sorted(decrypted) == [1, 2, 3, 4, 5]
        await s.execute(b"c FETCH 1:* (FLAGS ENVELOPE)")
        second = await until_tagged(peer_reader, b"c")
        assert sorted(decrypted) == [1, 2, 3, 4, 5]  # nothing decrypted the second time
        assert first[:-1] == second[:-1] and len(first) == 6 and second[-1].startswith(b"c OK")
        assert audited == [5, 5]  # a cached read is audited like the first
        # the same bytes as rendering from the message itself (the uncached path)
        atts = [FetchAtt("FLAGS"), FetchAtt("ENVELOPE")]
        sel = s.selected
        assert sel is not None
        for seq in range(1, 6):
            expected = b"* %d FETCH " % seq + fetchmod.render(sel.view(seq), atts, raws[seq])
            assert second[seq - 1] == expected
        # BODYSTRUCTURE not cached yet: read once more, then cached beside ENVELOPE
        await s.execute(b"d FETCH 2 (ENVELOPE BODYSTRUCTURE)")
        await until_tagged(peer_reader, b"d")
        await s.execute(b"e FETCH 2 (BODYSTRUCTURE ENVELOPE)")
        await until_tagged(peer_reader, b"e")
        assert sorted(decrypted) == [1, 2, 2, 3, 4, 5]
    finally:
        writer.close()
        peer_writer.close()
