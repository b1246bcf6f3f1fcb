"""Issue 12 §3: IMAP's reads run whole in one reader hop on prebuilt statements
(mailbox_store/imapreads.py), and its writes use fewer statements (messages.py,
folders.py, modseq.py). On SQLite and, with MSSANTE_TEST_STORE=postgresql, PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, func, select

from mailbox_store.models import Blob
from mailbox_store.store import Store
from policy.recipients import MailboxState

from tests.pg import sql

INS = "279035121518989"
CHILD = "185077512300175"


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\nFrom: a@b.fr\r\n\r\nbody {n}\r\n".encode()


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on `engine` inside the block (not BEGIN, COMMIT, ROLLBACK,
    nor PostgreSQL's NOTIFY to the other nodes, mailbox_store/nodefeed.py)."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK") \
                and "pg_notify" not in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_imap_reads_take_one_reader_hop_each_and_never_the_async_driver(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    child = await store.create_mailbox(CHILD, MailboxState.ACTIVE)
    await store.add_guardian(CHILD, INS)
    for i in range(3):
        await store.deliver([mb], msg(i))
    await store.deliver([child], msg(9))
    await store.store_flags(mb.id, "INBOX", [1], "+", ["\\Seen", "\\Deleted"])
    await store.expunge(mb.id, "INBOX")
    await store.set_subscribed(mb.id, "Archive", True)
    hops = 0
    run = store.reader.run

    async def counted(fn: Any) -> Any:
        nonlocal hops
        hops += 1
        return await run(fn)

    store.reader.run = counted  # type: ignore[method-assign]
    with statements(store.engine.sync_engine) as through_async:
        view = await store.list_view(mb.id)
        assert hops == 1  # LIST: own folders, the wards' folders and the subscriptions at once
        assert [f.name for f in view.folders][:1] == ["INBOX"] and view.subscribed >= {"INBOX", "Archive"}
        assert [(w.ins, [f.name for f in fs][:1]) for w, fs in view.wards] == [(CHILD, ["INBOX"])]
        inbox = next(f for f in view.folders if f.name == "INBOX")
        assert (inbox.messages, inbox.unseen) == (2, 2)
        assert [(f.messages, f.unseen) for w, fs in view.wards for f in fs if f.name == "INBOX"] == [(1, 1)]
        snap = await store.snapshot(mb.id, "INBOX")
        assert [m.uid for m in snap.messages] == [2, 3]
        assert await store.flags_of(snap.folder_id, [2, 3, 99]) == {2: frozenset(), 3: frozenset()}
        assert set(await store.modseqs_of(snap.folder_id, [2, 3])) == {2, 3}
        assert set(await store.blob_ids(snap.folder_id, [3, 42])) == {3}
        assert await store.vanished_since(snap.folder_id, 0) == [1]
        assert await store.recent_count(snap.folder_id) == 2
        assert (await store.get_mailbox(INS)).id == mb.id  # type: ignore[union-attr]
        assert (await store.mailbox_by_id(child.id)).ins == CHILD  # type: ignore[union-attr]
        assert [w.ins for w in await store.wards(mb.id)] == [CHILD]
        assert await store.fetch_raw_many(INS, "INBOX", [2, 3, 7]) == {2: msg(1), 3: msg(2)}
        assert (await store.folder(mb.id, "INBOX")).messages == 2  # type: ignore[union-attr]
        # APPEND's check: the folder exists, and its UIDVALIDITY for APPENDUID
        assert await store.folder_uidvalidity(mb.id, "INBOX") == snap.uidvalidity
        assert await store.folder_uidvalidity(mb.id, "Nowhere") is None
    assert through_async == []  # no statement went through the async engine
    assert hops >= 14


async def test_expunge_matches_the_whole_flag_and_leaves_shared_blobs(store: Store, store_url: str) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(4):
        await store.deliver([mb], msg(i))
    await store.store_flags(mb.id, "INBOX", [1], "+", ["\\Deleted"])
    await store.store_flags(mb.id, "INBOX", [2], "+", ["Deleted", "NotDeleted"])  # keywords, not \Deleted
    await store.store_flags(mb.id, "INBOX", [3], "+", ["$Label1", "\\Deleted", "\\Seen"])
    await store.copy(mb.id, "INBOX", [3], "Archive")  # the copy shares message 3's blob
    with sql(store_url) as conn:
        blobs_before = conn.execute(select(func.count()).select_from(Blob)).scalar()
    with statements(store.writer._engine) as ran:
        assert await store.expunge(mb.id, "INBOX") == [1, 3]
    # folder id, the DELETE (RETURNING where the engine has it), the orphan receipts
    # and blobs, the modseq, the expunged UIDs: six statements (nine before), plus a
    # SELECT where DELETE ... RETURNING or UPDATE ... RETURNING is missing and the row
    # locks on PostgreSQL
    assert len(ran) <= 6 + (0 if store.engine.dialect.delete_returning else 1) \
        + (1 if store.engine.dialect.name == "postgresql" else 0), ran
    assert [m.uid for m in (await store.snapshot(mb.id, "INBOX")).messages] == [2, 4]
    with sql(store_url) as conn:
        assert conn.execute(select(func.count()).select_from(Blob)).scalar() == blobs_before - 1
    assert await store.fetch_raw(INS, "Archive", 1) == msg(2)  # its blob stayed
    await store.store_flags(mb.id, "Archive", [1], "+", ["\\Deleted"])
    assert await store.expunge(mb.id, "Archive", only_uids=[1, 5]) == [1]
    with sql(store_url) as conn:
        assert conn.execute(select(func.count()).select_from(Blob)).scalar() == blobs_before - 2
    assert await store.expunge(mb.id, "INBOX", only_uids=[2]) == []  # keywords only: stays


async def test_store_flags_in_one_update_per_call(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(5):
        await store.deliver([mb], msg(i))
    with statements(store.writer._engine) as ran:
        done = await store.store_flags_if(mb.id, "INBOX", [1, 2, 3, 4, 5, 6], "+", ["\\Seen"])
    assert sorted(done.flags) == [1, 2, 3, 4, 5] and len(set(done.modseqs.values())) == 1
    # folder id, the rows, the modseq, one executemany UPDATE (+ the row lock on PostgreSQL)
    assert len([s for s in ran if s.lstrip().upper().startswith("UPDATE MESSAGES")]) == 1
    assert len(ran) <= 4 + (1 if store.engine.dialect.name == "postgresql" else 0), ran


async def test_fetch_raw_many_opens_small_and_large_messages(store: Store) -> None:
    """Small bodies are opened in the reader's thread, large ones (above
    INLINE_CRYPTO_MAX) in the crypto pool: both come back whole."""
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    big = b"Subject: gros\r\n\r\n" + b"x" * 400_000 + b"\r\n"
    await store.deliver([mb], msg(1))
    await store.deliver([mb], big)
    await store.deliver([mb], msg(3))
    assert await store.fetch_raw_many(INS, "INBOX", [1, 2, 3, 4]) == {1: msg(1), 2: big, 3: msg(3)}
