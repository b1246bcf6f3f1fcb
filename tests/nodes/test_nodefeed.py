"""The change feed across nodes (mailbox_store/nodefeed.py, issue 14 §2): payloads
(no database needed), and a delivery on one node waking a subscriber on another
through a real PostgreSQL's LISTEN/NOTIFY."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from mailbox_store.feed import Change, MessageMeta
from mailbox_store.nodefeed import MAX_PAYLOAD, decode, encode
from tests.nodes.helpers import INS, open_node
from tests.pg import PgServer


def test_payload_names_the_change_and_nothing_else() -> None:
    meta = MessageMeta(7, frozenset({"\\Seen"}), dt.datetime.now(dt.timezone.utc), 1234, 9)
    [payload] = encode("node-a", [Change("message.new", 3, "INBOX", 7, meta=meta, modseq=9),
                                  Change("message.flags", 3, "Archives/2026", 2, flags=frozenset({"$Secret"}))])
    assert "Seen" not in payload and "Secret" not in payload and "1234" not in payload
    node, changes = decode(payload)
    assert node == "node-a"
    assert changes == [Change("message.new", 3, "INBOX", 7, modseq=9, remote=True),
                       Change("message.flags", 3, "Archives/2026", 2, remote=True)]


def test_a_large_batch_is_split_under_postgresql_payload_limit() -> None:
    changes = [Change("message.new", 100_000 + i, "Dossier/" + "x" * 200, i, modseq=i) for i in range(500)]
    payloads = encode("n", changes)
    assert len(payloads) > 1 and all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    assert [c for p in payloads for c in decode(p)[1]] == [
        Change(c.kind, c.mailbox_id, c.folder, c.uid, modseq=c.modseq, remote=True) for c in changes]


def test_node_local_kinds_are_not_sent_and_garbage_is_refused() -> None:
    assert encode("n", [Change("audit.new", 1, "", 0)]) == []
    for bad in ("[]", '{"n": 1, "c": []}', '{"n": "x", "c": [["k", "1", "", 0, 0]]}', "not json"):
        with pytest.raises(ValueError):
            decode(bad)


@pytest.mark.asyncio
async def test_a_delivery_on_node_a_wakes_a_subscriber_on_node_b(pg: PgServer, pg_db: str) -> None:
    a, b = await open_node(pg.url(pg_db)), await open_node(pg.url(pg_db))
    try:
        mb = await a.create_mailbox(INS)
        on_a, on_b = a.feed.subscribe(), b.feed.subscribe()
        loop = asyncio.get_running_loop()
        [d] = await a.deliver([mb], b"Subject: hello\r\n\r\nbody\r\n")
        committed = loop.time()
        change = await asyncio.wait_for(on_b.get(), 10)
        woke_after = loop.time() - committed
        assert (change.kind, change.mailbox_id, change.folder, change.uid, change.remote) == \
            ("message.new", mb.id, "INBOX", d.uid, True)
        assert woke_after < 1.0, woke_after
        # node a heard its own change once, locally (with its metadata), not again remotely
        local = await asyncio.wait_for(on_a.get(), 10)
        assert not local.remote and local.meta is not None
        await asyncio.sleep(0.3)
        assert on_a.empty()
        # and what b's sessions read back for a change without metadata is there
        snap = await b.snapshot(mb.id, "INBOX")
        assert [m.uid for m in snap.messages] == [d.uid]
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_a_rolled_back_write_is_never_announced(pg: PgServer, pg_db: str) -> None:
    a, b = await open_node(pg.url(pg_db)), await open_node(pg.url(pg_db))
    try:
        mb = await a.create_mailbox(INS)
        on_b = b.feed.subscribe()
        with pytest.raises(Exception):
            await a.copy(mb.id, "INBOX", [1], "No such folder")
        await a.create_folder(mb.id, "Projets")
        change = await asyncio.wait_for(on_b.get(), 10)
        assert (change.kind, change.folder) == ("folder.created", "Projets")
    finally:
        await a.close()
        await b.close()
