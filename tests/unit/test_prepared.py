"""mailbox_store/prepared.py: a statement run straight on the DBAPI cursor gives what
`conn.execute` gives (values, types, column names), for every statement switched to it,
on SQLite and, with MSSANTE_TEST_STORE=postgresql, PostgreSQL; driver errors come out
wrapped as SQLAlchemy's; and the Reader's and writer's threads keep their connections
(mailbox_store/reader.py, writer.py), dropping one that was lost."""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import (
    Connection,
    Engine,
    column,
    create_engine,
    event,
    insert,
    select,
    table,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from mailbox_store import audit, folders, imapreads, messages, modseq, recent
from mailbox_store import store as store_module
from mailbox_store.engines import sync_url
from mailbox_store.models import AuditEvent, Blob, ExpungedUid, Folder, Message, ReceiptRequest
from mailbox_store.prepared import Prepared
from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.core.storefaults import classify
from tests.pg import on_postgresql

INS = "279035121518989"
CHILD = "185077512300175"
ORPHAN, ORPHAN_RECEIPT = "o" * 32, "r" * 32


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\nFrom: a@b.fr\r\n\r\nbody {n}\r\n".encode()


@pytest.fixture
async def filled(store: Store, store_url: str) -> dict[str, Any]:
    """A mailbox with a ward, five messages (flags, one \\Deleted, one expunged), a
    pending read receipt, and an engine of our own on the same database."""
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    child = await store.create_mailbox(CHILD, MailboxState.ACTIVE)
    await store.add_guardian(CHILD, INS)
    for i in range(6):
        await store.deliver([mb], msg(i))
    await store.store_flags(mb.id, "INBOX", [1, 2], "+", ["\\Seen", "$Label"])
    await store.store_flags(mb.id, "INBOX", [6], "+", ["\\Deleted"])
    await store.expunge(mb.id, "INBOX")
    await store.store_flags(mb.id, "INBOX", [3], "+", ["\\Deleted"])
    fid = (await store.folder(mb.id, "INBOX")).id  # type: ignore[union-attr]
    engine = create_engine(sync_url(store_url), poolclass=NullPool)
    with engine.begin() as conn:
        blob = conn.execute(select(Message.blob_id).where(Message.folder_id == fid, Message.uid == 2)).scalar_one()
        conn.execute(insert(ReceiptRequest).values(mailbox_id=mb.id, blob_id=blob, address="pro@x.mssante.fr",
                                                   message_id="<m2@x>", sent_at=None))
        blobs = dict(conn.execute(select(Message.uid, Message.blob_id).where(Message.folder_id == fid)).all())
        # two blobs no message points at (what an EXPUNGE leaves): one with a receipt
        conn.execute(insert(Blob), [{"id": ORPHAN, "sealed": b"x"}, {"id": ORPHAN_RECEIPT, "sealed": b"y"}])
        conn.execute(insert(ReceiptRequest).values(mailbox_id=mb.id, blob_id=ORPHAN_RECEIPT, address="pro@x.mssante.fr",
                                                   message_id="<o@x>", sent_at=None))
    yield {"mid": mb.id, "child": child.id, "fid": fid, "engine": engine, "blobs": blobs}
    engine.dispose()


def _typed(rows: list[Any]) -> list[tuple[tuple[type, Any], ...]]:
    return [tuple((type(v), v) for v in r) for r in rows]


def _reads(f: dict[str, Any]) -> list[tuple[str, Prepared, dict[str, Any]]]:
    mid, fid = f["mid"], f["fid"]
    return [
        ("folders", imapreads._P_FOLDERS, {"mid": mid}),
        ("folder", imapreads._P_FOLDER, {"mid": mid, "name": "INBOX"}),
        ("folder-none", imapreads._P_FOLDER, {"mid": mid, "name": "Nope"}),
        ("subscriptions", imapreads._P_SUBSCRIPTIONS, {"mid": mid}),
        ("snap-folder", imapreads._P_SNAP_FOLDER, {"mid": mid, "name": "INBOX"}),
        ("snap-messages", imapreads._P_SNAP_MESSAGES, {"fid": fid, "since": 0}),
        ("snap-since", imapreads._P_SNAP_MESSAGES, {"fid": fid, "since": 3}),
        ("modseqs", imapreads._P_MODSEQS, {"fid": fid, "uids": [1, 3, 6, 99]}),
        ("modseqs-empty", imapreads._P_MODSEQS, {"fid": fid, "uids": []}),
        ("blob-ids", imapreads._P_BLOB_IDS, {"fid": fid, "uids": [2]}),
        ("flags", imapreads._P_FLAGS, {"fid": fid, "uids": list(range(1, 8))}),
        ("vanished", imapreads._P_VANISHED, {"fid": fid, "modseq": 0}),
        ("first-recent", imapreads._P_FIRST_RECENT, {"fid": fid}),
        ("count-from", imapreads._P_COUNT_FROM, {"fid": fid, "first": 2}),
        ("mailbox-by-ins", imapreads._P_MAILBOX_BY_INS, {"ins": INS}),
        ("mailbox-by-id", imapreads._P_MAILBOX_BY_ID, {"mid": f["child"]}),
        ("wards", imapreads._P_WARDS, {"mid": mid}),
        ("mailboxes-by-ins", imapreads.MAILBOXES_BY_INS, {"ins": [CHILD, INS, "185077512300000"]}),
        ("raw", imapreads._P_RAW, {"ins": INS, "name": "INBOX", "uids": [1, 2, 5]}),
        ("receipt", imapreads._P_RECEIPT_PENDING, {"mid": mid, "folder": "INBOX", "uid": 2}),
        ("receipt-none", imapreads._P_RECEIPT_PENDING, {"mid": mid, "folder": "INBOX", "uid": 1}),
        ("folder-id", folders._FOLDER_ID, {"mid": mid, "name": "INBOX"}),
        ("flag-rows", messages._FLAG_ROWS, {"fid": fid, "uids": [1, 2, 3]}),
        ("select-deleted", messages._P_SELECT_DELETED, {"fid": fid}),
        ("select-deleted-among", messages._SELECT_DELETED_AMONG, {"fid": fid, "uids": [2, 3]}),
        ("mark", recent._MARK, {"fid": fid}),
        ("uidnext", recent._UIDNEXT, {"fid": fid}),
        ("modseqs-of-folders", modseq._MODSEQS, {"ids": [fid, fid + 1]}),
        ("folders-to-fill", store_module._FOLDERS_TO_FILL, {"folder": "INBOX", "ids": [mid, f["child"]]}),
    ]


async def test_every_prepared_read_returns_what_conn_execute_returns(filled: dict[str, Any]) -> None:
    engine: Engine = filled["engine"]
    with engine.connect() as conn:
        for name, prepared, params in _reads(filled):
            expected = conn.execute(prepared.stmt, params).all()
            got = prepared.all(conn, params)
            assert _typed(got) == _typed(expected), name
            assert [r._fields for r in got] == [r._fields for r in expected], name
            assert prepared.scalar(conn, params) == conn.execute(prepared.stmt, params).scalar(), name
    # the rows the filled store must give, so that the comparisons above compared something
    with engine.connect() as conn:
        snap = imapreads._P_SNAP_MESSAGES.all(conn, {"fid": filled["fid"], "since": 0})
        assert [r.uid for r in snap] == [1, 2, 3, 4, 5]
        assert isinstance(snap[0].internal_date, dt.datetime)
        assert imapreads._P_FOLDER.first(conn, {"mid": filled["mid"], "name": "INBOX"})[9] is True  # subscribed
        assert imapreads._P_VANISHED.scalars(conn, {"fid": filled["fid"], "modseq": 0}) == [6]
        assert imapreads._P_RECEIPT_PENDING.first(conn, {"mid": filled["mid"], "folder": "INBOX", "uid": 2})
        assert len(imapreads._P_WARDS.all(conn, {"mid": filled["mid"]})) == 1


def _state(conn: Connection) -> list[Any]:
    """Every row of the tables the statements of _writes touch, values typed; without
    the serial ids of inserted rows (a PostgreSQL sequence does not roll back)."""
    tables = (Message.__table__, Folder.__table__, Blob.__table__, ReceiptRequest.__table__, ExpungedUid.__table__,
              AuditEvent.__table__)
    return [sorted(_typed(conn.execute(select(*[c for c in t.columns if not (t.name in _SERIAL and c.name == "id")]))
                          .all()), key=repr)
            for t in tables]


_SERIAL = {"messages", "audit_events"}


def _writes(f: dict[str, Any]) -> list[tuple[str, Prepared, Any]]:
    fid = f["fid"]
    return [
        ("set-flags", messages._SET_FLAGS, [{"fid": fid, "u": 1, "f": "\\Answered", "m": 40},
                                            {"fid": fid, "u": 4, "f": "", "m": 40}]),
        ("delete-deleted", messages._DELETE_DELETED_RETURNING, {"fid": fid}),
        ("delete-deleted-among", messages._DELETE_DELETED_AMONG_RETURNING, {"fid": fid, "uids": [1, 3]}),
        ("delete-uids", messages._DELETE_UIDS, {"fid": fid, "uids": [4, 5]}),
        ("move-mark", recent._MOVE_MARK, {"fid": fid, "below": 5}),
        ("bump", modseq._BUMP, {"ids": [fid, fid + 1]}),
        ("bump-returning", modseq._BUMP_RETURNING, {"ids": [fid]}),
        ("set-uidnext", store_module._SET_UIDNEXT, [{"fid": fid, "new_uidnext": 50},
                                                    {"fid": fid + 1, "new_uidnext": 9}]),
        # message 2's blob is in use (its receipt stays), the fixture's orphans are not
        ("orphan-receipts", folders._ORPHAN_RECEIPTS, {"ids": [f["blobs"][2], ORPHAN_RECEIPT]}),
        ("orphan-blobs", folders._ORPHAN_BLOBS, {"ids": [ORPHAN, f["blobs"][2], "nope"]}),
        ("record-expunged", modseq._RECORD, [{"folder_id": fid, "uid": 40, "modseq": 41},
                                             {"folder_id": fid, "uid": 41, "modseq": 41}]),
        ("insert-audit", audit._INSERT, [{"mailbox_id": f["mid"], "at": dt.datetime(2026, 12, 6, 23, 0, 1, 5,
                                                                                 tzinfo=dt.timezone.utc),
                                          "actor": "patient", "action": "message.read", "detail": "INBOX 1",
                                          "source": "127.0.0.1"}]),
        ("insert-blobs", store_module._P_INSERT_BLOBS, [{"id": "b" * 32, "sealed": b"\x00sealed\xff"}]),
        ("insert-messages", store_module._P_INSERT_MESSAGES, [
            {"folder_id": fid, "uid": 90 + i, "blob_id": f["blobs"][1], "key_wrapped": b"\x01k", "flags": flags,
             "internal_date": dt.datetime(2026, 12, 6, 23, 0, i, tzinfo=dt.timezone.utc), "size": 10 + i,
             "thread_key": key, "modseq": 77} for i, (flags, key) in enumerate([("\\Seen", "t" * 64), ("", None)])]),
    ]


async def test_every_prepared_write_does_what_conn_execute_does(filled: dict[str, Any]) -> None:
    engine: Engine = filled["engine"]
    before = None
    for name, prepared, params in _writes(filled):
        returns = isinstance(params, dict) and prepared.stmt.is_dml and prepared.stmt._returning  # type: ignore[attr-defined]
        with engine.connect() as conn:
            trans = conn.begin()
            before = before or _state(conn)
            expected = conn.execute(prepared.stmt, params).all() if returns else conn.execute(prepared.stmt, params)
            expected_state = _state(conn)
            trans.rollback()
            trans = conn.begin()
            assert _state(conn) == before, name  # rolled back
            got = prepared.all(conn, params) if returns else prepared.execute(conn, params)
            got_state = _state(conn)
            trans.rollback()
        assert got_state == expected_state != before, name
        if returns:
            assert sorted(_typed(got)) == sorted(_typed(expected)) and got, name


async def test_traced_engines_see_every_prepared_statement(filled: dict[str, Any]) -> None:
    """While something listens to the cursor events (a test counting statements,
    tracing), the statements go through SQLAlchemy, with the same results."""
    engine: Engine = filled["engine"]
    seen: list[str] = []
    with engine.connect() as conn:
        plain = imapreads._P_SNAP_MESSAGES.all(conn, {"fid": filled["fid"], "since": 0})
        event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        traced = imapreads._P_SNAP_MESSAGES.all(conn, {"fid": filled["fid"], "since": 0})
    assert len(seen) == 1 and _typed(traced) == _typed(plain) and [r._fields for r in traced] == \
        [r._fields for r in plain]


async def test_driver_errors_come_out_as_sqlalchemy_wraps_them(filled: dict[str, Any]) -> None:
    missing = Prepared(select(column("x")).select_from(table("no_such_table")))
    with filled["engine"].connect() as conn, pytest.raises(DBAPIError) as raised:
        missing.all(conn)
    assert raised.value.orig is not None and "no_such_table" in str(raised.value.orig)
    assert classify(raised.value) is not None  # a storage fault to the fronts, as before


async def test_in_lists_of_every_length_get_their_own_sql(filled: dict[str, Any]) -> None:
    with filled["engine"].connect() as conn:
        for n in (0, 1, 2, 5, 1, 0):
            uids = list(range(1, n + 1))
            got = imapreads._P_FLAGS.all(conn, {"fid": filled["fid"], "uids": uids})
            assert [r.uid for r in got] == [u for u in uids if u <= 5]


def _checkouts(engine: Engine) -> Iterator[list[int]]:
    count = [0]
    event.listen(engine, "checkout", lambda *a: count.__setitem__(0, count[0] + 1))
    return iter([count])


async def test_reader_threads_and_the_writer_keep_their_connections(store: Store) -> None:
    reader_checkouts = next(_checkouts(store.reader.engine))
    writer_checkouts = next(_checkouts(store.writer._engine))
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(20):
        await store.deliver([mb], msg(i))
        await store.store_flags(mb.id, "INBOX", [i + 1], "+", ["\\Seen"])
    snaps = await asyncio.gather(*(store.snapshot(mb.id, "INBOX") for _ in range(40)))
    assert all(len(s.messages) == 20 for s in snaps)
    # old code: one checkout per hop and per batch (60+ each)
    assert reader_checkouts[0] <= 4, reader_checkouts
    assert writer_checkouts[0] <= 1, writer_checkouts


@pytest.mark.skipif(on_postgresql(), reason="SQLite WAL: one snapshot per hop (PostgreSQL: READ COMMITTED, as before)")
async def test_a_reader_hop_is_one_snapshot_beside_the_writer(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    await store.deliver([mb], msg(0))
    first_read, written = threading.Event(), threading.Event()

    def hop(conn: Connection) -> tuple[int, int]:
        before = len(imapreads.snapshot(conn, mb.id, "INBOX").messages)
        first_read.set()
        assert written.wait(30)
        return before, len(imapreads.snapshot(conn, mb.id, "INBOX").messages)

    reading = asyncio.ensure_future(store.reader.run(hop))
    assert await asyncio.to_thread(first_read.wait, 30)
    await store.deliver([mb], msg(1))  # committed while the hop is open
    written.set()
    assert await reading == (1, 1)
    assert len((await store.snapshot(mb.id, "INBOX")).messages) == 2  # the next hop sees it


async def test_a_lost_reader_connection_fails_its_hop_then_is_replaced(store: Store, store_url: str) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    await store.deliver([mb], msg(0))
    # one thread, so that the hops below share its connection
    reader = store_module.Reader(store.reader.engine, threads=1)
    try:
        def who(conn: Connection) -> tuple[Any, Any]:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() if on_postgresql() else None
            return conn.connection.dbapi_connection, pid

        dbapi_conn, pid = await reader.run(who)
        # lost between two hops: the server ended it, or (SQLite) the file handle is gone
        if on_postgresql():
            with create_engine(sync_url(store_url), poolclass=NullPool).connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        else:
            dbapi_conn.close()
        with pytest.raises(DBAPIError) as raised:
            await reader.run(lambda conn: imapreads.snapshot(conn, mb.id, "INBOX"))
        assert raised.value.connection_invalidated and classify(raised.value) is not None

        def again(conn: Connection) -> tuple[Any, int]:
            return conn.connection.dbapi_connection, len(imapreads.snapshot(conn, mb.id, "INBOX").messages)

        replaced, count = await reader.run(again)
        assert count == 1 and replaced is not dbapi_conn
    finally:
        await asyncio.to_thread(reader.close)


def test_prepared_sql_is_the_dialects_own() -> None:
    """A sanity check of the text itself: one placeholder per IN value, SQLite's qmark."""
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INTEGER, b TEXT)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'z')")
        t = table("t", column("a"), column("b"))
        from sqlalchemy import bindparam
        p = Prepared(select(t.c.b).where(t.c.a.in_(bindparam("v", expanding=True))).order_by(t.c.a))
        assert p.scalars(conn, {"v": [3, 1]}) == ["x", "z"]
        shape = p._for(conn.dialect).shape({"v": [3, 1]})
        assert shape.sql.count("?") == 2 and "POSTCOMPILE" not in shape.sql
        assert conn.execute(text("select count(*) from t")).scalar() == 3
