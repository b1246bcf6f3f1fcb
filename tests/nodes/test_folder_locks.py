"""UIDs, UIDNEXT and modseqs strictly increasing per folder when two nodes write to the
same mailbox at once (mailbox_store/rowlocks.py, issue 14 §2), on a real PostgreSQL:
two stores with their own engines and writer threads, as two `serve` processes have."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from mailbox_store.models import Folder, Message
from mailbox_store.store import Store
from tests.nodes.helpers import INS, open_node
from tests.pg import PgServer

N = 120  # per node


async def _rows(store: Store, mailbox_id: int, folder: str) -> tuple[list[tuple[int, int]], int, int]:
    async with store.engine.connect() as conn:
        f = (await conn.execute(select(Folder.id, Folder.uidnext, Folder.highestmodseq).where(
            Folder.mailbox_id == mailbox_id, Folder.name == folder))).one()
        rows = (await conn.execute(select(Message.uid, Message.modseq).where(Message.folder_id == f.id)
                                   .order_by(Message.uid))).all()
    return [(r.uid, r.modseq) for r in rows], f.uidnext, f.highestmodseq


def _check_folder(rows: list[tuple[int, int]], uidnext: int, highest: int, expected: int) -> None:
    uids = [u for u, _ in rows]
    assert len(uids) == expected and len(set(uids)) == expected
    assert uidnext == max(uids) + 1
    modseqs = [m for _, m in rows]
    assert modseqs == sorted(modseqs)  # a later UID never has an older modseq
    assert highest >= modseqs[-1]


@pytest.mark.asyncio
async def test_two_nodes_deliver_to_one_mailbox(pg: PgServer, pg_db: str) -> None:
    a, b = await open_node(pg.url(pg_db)), await open_node(pg.url(pg_db))
    try:
        mb = await a.create_mailbox(INS)
        mb_b = await b.require_mailbox(INS)

        async def flood(node: Store, who: str, mailbox) -> list[int]:
            async def one(i: int) -> int:
                [d] = await node.deliver([mailbox], f"Subject: {who} {i}\r\n\r\nbody\r\n".encode())
                return d.uid
            uids = []
            for start in range(0, N, 20):  # 20 in flight: the writer groups them
                uids += await asyncio.gather(*(one(i) for i in range(start, start + 20)))
            return uids

        ua, ub = await asyncio.wait_for(asyncio.gather(flood(a, "a", mb), flood(b, "b", mb_b)), 300)
        assert not set(ua) & set(ub)
        rows, uidnext, highest = await _rows(a, mb.id, "INBOX")
        _check_folder(rows, uidnext, highest, 2 * N)
        assert sorted(ua + ub) == list(range(1, 2 * N + 1))
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_two_nodes_copy_and_move_into_the_same_folder(pg: PgServer, pg_db: str) -> None:
    """COPY and MOVE read the target's UIDNEXT: without the row lock two nodes took the
    same UIDs (a duplicate key), and opposite MOVEs could deadlock."""
    a, b = await open_node(pg.url(pg_db)), await open_node(pg.url(pg_db))
    try:
        mb = await a.create_mailbox(INS)
        await a.create_folder(mb.id, "X")
        await a.create_folder(mb.id, "Y")
        for i in range(40):
            await a.deliver([mb], f"Subject: {i}\r\n\r\nbody\r\n".encode(), folder="X")
            await a.deliver([mb], f"Subject: {i}\r\n\r\nbody\r\n".encode(), folder="Y")

        async def copies(node: Store, source: str, target: str, move: bool) -> None:
            for uid in range(1, 41):
                await node.copy(mb.id, source, [uid], target, move=move)

        await asyncio.wait_for(asyncio.gather(
            copies(a, "X", "INBOX", False), copies(b, "Y", "INBOX", False),
            copies(a, "X", "Y", True), copies(b, "Y", "X", True)), 300)
        rows, uidnext, highest = await _rows(b, mb.id, "INBOX")
        _check_folder(rows, uidnext, highest, len(rows))
        assert len(rows) >= 40  # at least X's or Y's first copies, none lost to a failure
        for folder in ("X", "Y"):
            rows, uidnext, highest = await _rows(b, mb.id, folder)
            if rows:
                _check_folder(rows, uidnext, highest, len(rows))
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_expunge_locks_its_folder_before_any_message(pg: PgServer, pg_db: str) -> None:
    """Every write path takes the folder's row lock before its first write (rowlocks.py).
    EXPUNGE deleted the messages first and locked the folder after (its modseq): beside
    another node's STORE (folder, then messages) that deadlocked, and imaptest's stress on
    three nodes got `NO [SERVERBUG]` (bench/imap_nodes.py). Here a transaction holds the
    folder row: the waiting EXPUNGE must hold no message row meanwhile."""
    a = await open_node(pg.url(pg_db))
    engine = create_engine(pg.url(pg_db, "psycopg"), poolclass=NullPool)
    try:
        mb = await a.create_mailbox(INS)
        for i in range(3):
            await a.deliver([mb], f"Subject: {i}\r\n\r\nbody\r\n".encode())
        await a.store_flags(mb.id, "INBOX", [1, 2], "+", ["\\Deleted"])
        fid = (await a.folder(mb.id, "INBOX")).id  # type: ignore[union-attr]
        with engine.connect() as holder:
            held = holder.begin()
            holder.execute(select(Folder.id).where(Folder.id == fid).with_for_update()).all()
            expunge = asyncio.ensure_future(a.expunge(mb.id, "INBOX"))
            await asyncio.sleep(1)
            assert not expunge.done()  # waiting for the folder's row
            with engine.connect() as probe:  # NOWAIT: fails at once on a row the EXPUNGE holds
                got = probe.execute(select(Message.uid).where(Message.folder_id == fid).order_by(Message.uid)
                                    .with_for_update(nowait=True)).scalars().all()
                probe.rollback()
            assert got == [1, 2, 3]
            held.rollback()
        assert await asyncio.wait_for(expunge, 30) == [1, 2]
    finally:
        engine.dispose()
        await a.close()
