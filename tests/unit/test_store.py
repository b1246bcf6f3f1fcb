"""mailbox_store/store.py (with writer.py and feed.py behind it): mailboxes, deliveries,
UIDs, encryption at rest and durability settings, on a real SQLite file."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
import structlog.testing
from sqlalchemy import Connection

from mailbox_store.crypto import CryptoError, MasterKey
from mailbox_store.feed import Change, Feed
from mailbox_store.models import DEFAULT_FOLDERS
from mailbox_store import migrate
from mailbox_store.store import (Delivered, MailboxExists, MailboxInfo, NoSuchMailbox, Store, StoreError,
                                 sqlite_url)
from policy.recipients import MailboxState
from tests.pg import on_postgresql

INS_A = "279035121518989"
INS_B = "185052A00412368"
INS_C = "292072B05001788"


def message(marker: str = "", subject: str = "Compte rendu") -> bytes:
    return (f"From: dr.house@hopital.mssante.fr\r\nTo: {INS_A}@patient.mssante.fr\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@hopital.mssante.fr>\r\n\r\n"
            f"Bonjour,\r\nvos r\u00e9sultats {marker}\r\n").encode("utf-8")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The SQLite file itself: the tests that read or alter it run on SQLite only."""
    if on_postgresql():
        pytest.skip("reads the SQLite file directly")
    return tmp_path / "relay.db"


@pytest.fixture
def master() -> MasterKey:
    return MasterKey(os.urandom(32))


@pytest.fixture
async def store(store_url: str, master: MasterKey):
    s = await Store.open(store_url, master)
    yield s
    await s.close()


def db_bytes(db_path: Path) -> bytes:
    """Everything SQLite keeps on disk for this database."""
    out = b""
    for suffix in ("", "-wal", "-journal"):
        p = db_path.with_name(db_path.name + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


# --- mailboxes ---------------------------------------------------------------------------------

async def test_create_get_list_set_state(store: Store) -> None:
    a = await store.create_mailbox(INS_A, notify_email="patient@example.fr")
    assert isinstance(a, MailboxInfo)
    assert (a.ins, a.state, a.notify_email) == (INS_A, MailboxState.PENDING, "patient@example.fr")
    assert a.created_at.tzinfo is not None
    b = await store.create_mailbox(INS_B, state=MailboxState.ACTIVE)
    assert b.id != a.id

    got = await store.get_mailbox(INS_A)
    assert got is not None
    assert (got.id, got.ins, got.state, got.notify_email) == (a.id, INS_A, MailboxState.PENDING,
                                                              "patient@example.fr")
    assert abs((got.created_at - a.created_at).total_seconds()) < 1
    assert await store.get_mailbox(INS_C) is None

    assert [m.ins for m in await store.list_mailboxes()] == sorted([INS_A, INS_B])

    changed = await store.set_state(INS_A, MailboxState.OPPOSED)
    assert changed.state is MailboxState.OPPOSED and changed.id == a.id
    got = await store.get_mailbox(INS_A)
    assert got is not None and got.state is MailboxState.OPPOSED
    other = await store.get_mailbox(INS_B)
    assert other is not None and other.state is MailboxState.ACTIVE


async def test_new_mailbox_has_default_folders(store: Store) -> None:
    await store.create_mailbox(INS_A)
    folders = await store.folders(INS_A)
    assert [(f.name, f.special_use) for f in folders] == list(DEFAULT_FOLDERS)
    assert all(f.messages == 0 and f.unseen == 0 and f.uidnext == 1 for f in folders)
    assert all(f.uidvalidity > 0 for f in folders)


async def test_duplicate_create_raises_and_writer_goes_on(store: Store) -> None:
    await store.create_mailbox(INS_A)
    with pytest.raises(MailboxExists):
        await store.create_mailbox(INS_A)
    # the failed job was rolled back alone: the store still writes, and no half mailbox exists
    await store.create_mailbox(INS_B)
    assert [m.ins for m in await store.list_mailboxes()] == sorted([INS_A, INS_B])
    assert len(await store.folders(INS_A)) == len(DEFAULT_FOLDERS)


async def test_set_state_unknown_raises(store: Store) -> None:
    with pytest.raises(NoSuchMailbox):
        await store.set_state(INS_C, MailboxState.CLOSED)
    with pytest.raises(NoSuchMailbox):
        await store.folders(INS_C)


# --- deliveries --------------------------------------------------------------------------------

async def test_deliver_to_two_mailboxes_at_once(store: Store) -> None:
    a = await store.create_mailbox(INS_A)
    b = await store.create_mailbox(INS_B)
    raw = message("deux destinataires")
    out = await store.deliver([a, b], raw)
    assert out == [Delivered(a.id, "INBOX", 1), Delivered(b.id, "INBOX", 1)]
    for ins in (INS_A, INS_B):
        inbox = {f.name: f for f in await store.folders(ins)}["INBOX"]
        assert (inbox.messages, inbox.unseen, inbox.uidnext) == (1, 1, 2)
        msgs = await store.messages(ins)
        assert [(m.uid, m.size, m.flags) for m in msgs] == [(1, len(raw), ())]
        assert await store.fetch_raw(ins, "INBOX", 1) == raw
    # a second message takes UID 2, other folders are untouched
    assert await store.deliver([a], message()) == [Delivered(a.id, "INBOX", 2)]
    folders = {f.name: f for f in await store.folders(INS_A)}
    assert (folders["INBOX"].messages, folders["INBOX"].uidnext) == (2, 3)
    assert folders["Sent"].messages == 0 and folders["Sent"].uidnext == 1


async def test_seen_flag_counts_as_read(store: Store) -> None:
    a = await store.create_mailbox(INS_A)
    await store.deliver([a], message(), folder="Sent", flags=("\\Seen",))
    await store.deliver([a], message(), folder="Sent")
    sent = {f.name: f for f in await store.folders(INS_A)}["Sent"]
    assert (sent.messages, sent.unseen) == (2, 1)
    assert [m.flags for m in await store.messages(INS_A, "Sent")] == [("\\Seen",), ()]


async def test_fetch_raw_exact_bytes(store: Store) -> None:
    a = await store.create_mailbox(INS_A)
    raw = message() + bytes(range(256)) + b"\r\n.\r\n..\r\nfin sans CRLF"
    await store.deliver([a], raw)
    assert await store.fetch_raw(INS_A, "INBOX", 1) == raw
    with pytest.raises(StoreError):
        await store.fetch_raw(INS_A, "INBOX", 2)
    with pytest.raises(StoreError):
        await store.fetch_raw(INS_B, "INBOX", 1)


async def test_20_concurrent_deliveries_to_one_mailbox(store: Store) -> None:
    a = await store.create_mailbox(INS_A)
    await store.deliver([a], message("warm-up"), folder="Archive")  # data key now cached
    batches, jobs = store.writer.batches, store.writer.jobs
    raws = [message(f"numero-{i:02d}") for i in range(20)]
    results = await asyncio.gather(*(store.deliver([a], r) for r in raws))
    uids = [r[0].uid for r in results]
    # no gap, no repeat, and in submission order (the writer applies its queue in order)
    assert uids == list(range(1, 21))
    assert store.writer.jobs - jobs == 20
    assert store.writer.batches - batches <= 2  # group commit: not one transaction each
    # each UID holds the message it was reported for
    for raw, uid in zip(raws, uids, strict=True):
        assert await store.fetch_raw(INS_A, "INBOX", uid) == raw
    assert [m.uid for m in await store.messages(INS_A)] == list(range(1, 21))
    inbox = {f.name: f for f in await store.folders(INS_A)}["INBOX"]
    assert (inbox.messages, inbox.uidnext) == (20, 21)


async def test_concurrent_deliveries_uncached_keys_and_several_mailboxes(store: Store) -> None:
    boxes = [await store.create_mailbox(ins) for ins in (INS_A, INS_B, INS_C)]
    tasks = [store.deliver([boxes[i % 3]], message(str(i))) for i in range(30)]
    results = await asyncio.gather(*tasks)
    for box in boxes:
        uids = sorted(d.uid for r in results for d in r if d.mailbox_id == box.id)
        assert uids == list(range(1, 11))


async def test_deliver_to_unknown_folder_fails_alone(store: Store) -> None:
    a = await store.create_mailbox(INS_A)
    ok, bad = await asyncio.gather(store.deliver([a], message()),
                                   store.deliver([a], message(), folder="NoSuchFolder"),
                                   return_exceptions=True)
    assert ok == [Delivered(a.id, "INBOX", 1)]
    assert isinstance(bad, Exception)
    assert [m.uid for m in await store.messages(INS_A)] == [1]


async def test_failing_delivery_in_a_group_costs_no_uid(store: Store) -> None:
    a = await store.create_mailbox(INS_A)
    b = await store.create_mailbox(INS_B)
    await store.deliver([a], message("warm-up"), folder="Archive")
    await store.deliver([b], message("warm-up"), folder="Archive")
    raws = [message(str(i)) for i in range(5)]
    results = await asyncio.gather(
        store.deliver([a], raws[0]),
        store.deliver([a, b], raws[1]),
        store.deliver([a], raws[2], folder="NoSuchFolder"),
        store.deliver([a], raws[3]),
        store.deliver([b], raws[4]),
        return_exceptions=True)
    assert isinstance(results[2], Exception)
    assert results[0] == [Delivered(a.id, "INBOX", 1)]
    assert results[1] == [Delivered(a.id, "INBOX", 2), Delivered(b.id, "INBOX", 1)]
    assert results[3] == [Delivered(a.id, "INBOX", 3)]
    assert results[4] == [Delivered(b.id, "INBOX", 2)]
    assert [await store.fetch_raw(INS_A, "INBOX", u) for u in (1, 2, 3)] == [raws[0], raws[1], raws[3]]
    assert [await store.fetch_raw(INS_B, "INBOX", u) for u in (1, 2)] == [raws[1], raws[4]]
    assert {f.name: f.uidnext for f in await store.folders(INS_A)}["INBOX"] == 4


# --- encryption at rest ------------------------------------------------------------------------

async def test_raw_bytes_not_on_disk(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A)
    marker = f"MARQUEUR-{uuid.uuid4().hex}"
    raw = message(marker, subject=f"Sujet {marker}")
    await store.deliver([a], raw)
    on_disk = db_bytes(db_path)
    assert INS_A.encode() in on_disk  # the search sees the database's plain columns...
    assert marker.encode() not in on_disk  # ...but no message content
    assert b"dr.house@hopital.mssante.fr" not in on_disk
    await store.close()  # checkpoint: the WAL is copied into the main file
    on_disk = db_bytes(db_path)
    assert INS_A.encode() in on_disk
    assert marker.encode() not in on_disk


async def test_swapped_sealed_columns_fail_to_decrypt(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A)
    raws = [message("un"), message("deux")]
    for r in raws:
        await store.deliver([a], r)
    con = sqlite3.connect(db_path, timeout=5)
    try:
        (id1, s1), (id2, s2) = con.execute("SELECT b.id, b.sealed FROM blobs b JOIN messages m "
                                           "ON m.blob_id = b.id ORDER BY m.uid").fetchall()
        con.execute("UPDATE blobs SET sealed = ? WHERE id = ?", (s2, id1))
        con.execute("UPDATE blobs SET sealed = ? WHERE id = ?", (s1, id2))
        con.commit()
        # same mailbox, same data key: only the blob id in the associated data tells them apart
        with pytest.raises(CryptoError):
            await store.fetch_raw(INS_A, "INBOX", 1)
        with pytest.raises(CryptoError):
            await store.fetch_raw(INS_A, "INBOX", 2)
        con.execute("UPDATE blobs SET sealed = ? WHERE id = ?", (s1, id1))
        con.execute("UPDATE blobs SET sealed = ? WHERE id = ?", (s2, id2))
        con.commit()
    finally:
        con.close()
    assert [await store.fetch_raw(INS_A, "INBOX", u) for u in (1, 2)] == raws


async def test_message_pointed_at_another_mailboxs_blob_fails(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A)
    b = await store.create_mailbox(INS_B)
    await store.deliver([a], message("secret de A"))
    await store.deliver([b], message("message de B"))
    con = sqlite3.connect(db_path, timeout=5)
    try:
        blob_a = con.execute("SELECT m.blob_id FROM messages m JOIN folders f ON f.id = m.folder_id "
                             "WHERE f.mailbox_id = ?", (a.id,)).fetchone()[0]
        con.execute("UPDATE messages SET blob_id = ? WHERE folder_id IN "
                    "(SELECT id FROM folders WHERE mailbox_id = ?)", (blob_a, b.id))
        con.commit()
    finally:
        con.close()
    with pytest.raises(CryptoError):
        await store.fetch_raw(INS_B, "INBOX", 1)


async def test_stolen_message_key_and_blob_pointer_fail(store: Store, db_path: Path) -> None:
    """B's row pointed at A's blob *with A's wrapped content key*: B's data key cannot
    unwrap a key sealed for A (the key's associated data names the mailbox)."""
    a = await store.create_mailbox(INS_A)
    b = await store.create_mailbox(INS_B)
    await store.deliver([a], message("secret de A"))
    await store.deliver([b], message("message de B"))
    con = sqlite3.connect(db_path, timeout=5)
    try:
        blob_a, key_a = con.execute(
            "SELECT m.blob_id, m.key_wrapped FROM messages m JOIN folders f ON f.id = m.folder_id "
            "WHERE f.mailbox_id = ?", (a.id,)).fetchone()
        con.execute("UPDATE messages SET blob_id = ?, key_wrapped = ? WHERE folder_id IN "
                    "(SELECT id FROM folders WHERE mailbox_id = ?)", (blob_a, key_a, b.id))
        con.commit()
    finally:
        con.close()
    with pytest.raises(CryptoError):
        await store.fetch_raw(INS_B, "INBOX", 1)


async def test_one_blob_for_several_recipients(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A)
    b = await store.create_mailbox(INS_B)
    raw = message("pour les deux")
    await store.deliver([a, b], raw)
    assert await store.fetch_raw(INS_A, "INBOX", 1) == raw == await store.fetch_raw(INS_B, "INBOX", 1)
    con = sqlite3.connect(db_path, timeout=5)
    try:
        assert con.execute("SELECT count(*) FROM blobs").fetchone()[0] == 1
        keys = con.execute("SELECT key_wrapped FROM messages").fetchall()
        assert len(keys) == 2 and keys[0] != keys[1]
    finally:
        con.close()


async def test_wrapped_key_copied_to_another_mailbox_fails(db_path: Path, master: MasterKey) -> None:
    store = await Store.open(sqlite_url(db_path), master)
    try:
        a = await store.create_mailbox(INS_A)
        b = await store.create_mailbox(INS_B)
        await store.deliver([a], message())
        await store.deliver([b], message())
    finally:
        await store.close()
    con = sqlite3.connect(db_path)
    con.execute("UPDATE mailboxes SET data_key_wrapped = "
                "(SELECT data_key_wrapped FROM mailboxes WHERE ins = ?) WHERE ins = ?", (INS_A, INS_B))
    con.commit()
    con.close()
    store = await Store.open(sqlite_url(db_path), master)  # no data key cached
    try:
        with pytest.raises(CryptoError):
            await store.fetch_raw(INS_B, "INBOX", 1)
        assert await store.fetch_raw(INS_A, "INBOX", 1)
    finally:
        await store.close()


async def test_reopen_keeps_messages_and_needs_the_same_master_key(db_path: Path, master: MasterKey) -> None:
    raw = message("durable")
    store = await Store.open(sqlite_url(db_path), master)
    try:
        a = await store.create_mailbox(INS_A)
        await store.deliver([a], raw)
    finally:
        await store.close()
    store = await Store.open(sqlite_url(db_path), master)
    try:
        assert await store.fetch_raw(INS_A, "INBOX", 1) == raw
        async with store.engine.connect() as conn:
            head = ScriptDirectory.from_config(migrate.alembic_config(None)).get_current_head()
            assert (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all() == [(head,)]
    finally:
        await store.close()
    store = await Store.open(sqlite_url(db_path), MasterKey(os.urandom(32)))
    try:
        with pytest.raises(CryptoError):
            await store.fetch_raw(INS_A, "INBOX", 1)
    finally:
        await store.close()


# --- change feed -------------------------------------------------------------------------------

class CommittedCheckingFeed(Feed):
    """Records, at each publish, what an independent connection sees as committed."""

    def __init__(self, db_path: Path):
        super().__init__()
        self.db_path = db_path
        self.seen: list[tuple[list[Change], set[tuple[int, str, int]]]] = []

    def publish(self, changes: list[Change]) -> None:
        con = sqlite3.connect(self.db_path, timeout=5)
        try:
            committed = set(con.execute("SELECT f.mailbox_id, f.name, m.uid FROM messages m "
                                        "JOIN folders f ON f.id = m.folder_id").fetchall())
        finally:
            con.close()
        self.seen.append((list(changes), committed))
        super().publish(changes)


async def test_feed_gets_message_new_after_commit(db_path: Path, master: MasterKey) -> None:
    feed = CommittedCheckingFeed(db_path)
    store = await Store.open(sqlite_url(db_path), master, feed=feed)
    try:
        a = await store.create_mailbox(INS_A)
        b = await store.create_mailbox(INS_B)
        assert feed.seen == []  # creating mailboxes publishes nothing
        q = feed.subscribe()

        # hold the writer so the delivery is in flight for a while
        release = threading.Event()

        def blocker(conn: Connection):
            release.wait(5)
            return None, []

        blocked = asyncio.ensure_future(store.writer.submit(blocker))
        delivery = asyncio.ensure_future(store.deliver([a, b], message()))
        await asyncio.sleep(0.1)
        assert not delivery.done()
        assert q.empty() and feed.seen == []  # nothing is announced before it is committed
        release.set()
        out = await delivery
        await blocked

        assert out == [Delivered(a.id, "INBOX", 1), Delivered(b.id, "INBOX", 1)]
        got = [q.get_nowait(), q.get_nowait()]
        assert q.empty()
        assert [(c.kind, c.mailbox_id, c.folder, c.uid) for c in got] == [
            ("message.new", a.id, "INBOX", 1), ("message.new", b.id, "INBOX", 1)]
        # a change carries the new message's metadata, so listeners need not ask again
        assert all(c.meta is not None and c.meta.uid == 1 and c.meta.size == len(message()) for c in got)
        # at publish time, both rows were already visible to another connection: committed
        assert len(feed.seen) == 1
        changes, committed = feed.seen[0]
        assert {(c.mailbox_id, c.folder, c.uid) for c in changes} <= committed

        # a failed delivery announces nothing
        with pytest.raises(StoreError, match="no folder NoSuchFolder"):
            await store.deliver([a], message(), folder="NoSuchFolder")
        assert q.empty() and len(feed.seen) == 1
        feed.unsubscribe(q)
        await store.deliver([a], message())
        assert q.empty()
    finally:
        await store.close()


# --- durability settings and locking -----------------------------------------------------------

async def test_sqlite_pragmas_on_store_connections(store: Store) -> None:
    if on_postgresql():
        pytest.skip("SQLite's PRAGMAs")
    async with store.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 10_000
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1

    def read_pragmas(conn: Connection):
        return tuple(conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                     for p in ("journal_mode", "synchronous", "busy_timeout")), []

    # the writer's own connection, the one that commits deliveries
    assert await store.writer.submit(read_pragmas) == ("wal", 2, 10_000)


def _hold_write_lock(db_path: Path, locked: threading.Event, seconds: float) -> None:
    con = sqlite3.connect(db_path, isolation_level=None, timeout=5)
    try:
        con.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        con.execute("COMMIT")
    finally:
        con.close()


async def test_other_process_lock_makes_delivery_wait(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(db_path, locked, 0.5))
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        t0 = time.monotonic()
        out = await store.deliver([a], message())
        waited = time.monotonic() - t0
    finally:
        await asyncio.to_thread(holder.join)
    assert out == [Delivered(a.id, "INBOX", 1)]
    assert waited >= 0.3  # it waited for the lock instead of failing
    assert [m.uid for m in await store.messages(INS_A)] == [1]


async def test_lock_longer_than_busy_timeout_is_retried(db_path: Path, master: MasterKey) -> None:
    store = await Store.open(sqlite_url(db_path), master, busy_timeout_ms=50)
    try:
        a = await store.create_mailbox(INS_A)
        locked = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(db_path, locked, 0.4))
        holder.start()
        try:
            assert await asyncio.to_thread(locked.wait, 5)
            with structlog.testing.capture_logs() as logs:
                out = await store.deliver([a], message())
        finally:
            await asyncio.to_thread(holder.join)
        assert out == [Delivered(a.id, "INBOX", 1)]
        assert any(e["event"] == "store.locked_retry" for e in logs)  # it did meet the lock
    finally:
        await store.close()
