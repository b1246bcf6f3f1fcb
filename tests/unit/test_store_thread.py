"""mailbox_store/thread.py: the stored conversation index (issue 11), written at MX
delivery, at the Sent copy of a submission, at APPEND and at COPY; filled for older
rows by the backfill. On a real SQLite file."""
from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest

from mailbox_store.crypto import MasterKey
from mailbox_store.outbound import Recipient
from mailbox_store.spool import SpooledMessage
from mailbox_store.store import Store, sqlite_url
from mailbox_store.thread import thread_root_of
from policy.recipients import MailboxState

INS_A = "279035121518989"
INS_B = "185052A00412368"
PRO = "dr.house@hopital.mssante.fr"


def message(msg_id: str, subject: str = "Suivi", in_reply_to: str | None = None,
            references: str | None = None, sender: str = PRO) -> bytes:
    head = f"From: {sender}\r\nTo: {INS_A}@patient.mssante.fr\r\nSubject: {subject}\r\nMessage-ID: {msg_id}\r\n"
    if in_reply_to:
        head += f"In-Reply-To: {in_reply_to}\r\n"
    if references:
        head += f"References: {references}\r\n"
    return (head + "\r\nBonjour,\r\n").encode()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "relay.db"


@pytest.fixture
async def store(db_path: Path):
    s = await Store.open(sqlite_url(db_path), MasterKey(os.urandom(32)))
    yield s
    await s.close()


def keys_in_db(db_path: Path) -> list[str | None]:
    with sqlite3.connect(db_path) as db:
        return [r[0] for r in db.execute("SELECT thread_key FROM messages ORDER BY id")]


def test_root_is_the_conversation_rule() -> None:
    assert thread_root_of(message("<r@x>", references="<a@x> <b@x>", in_reply_to="<b@x>")) == "<a@x>"
    assert thread_root_of(message("<r@x>", in_reply_to="<b@x>")) == "<b@x>"
    assert thread_root_of(message("<r@x>")) == "<r@x>"
    assert thread_root_of(b"Subject: none\r\n\r\nbody") is None
    assert thread_root_of(b"\xff\xfe garbage") is None


async def test_a_conversation_is_found_whatever_came_in_between(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A, MailboxState.ACTIVE)
    first = await store.deliver([a], message("<g-1@x>", "Suivi de grossesse"))
    for i in range(60):
        await store.deliver([a], message(f"<info-{i}@x>", f"Information {i}"))
    # the patient's reply: its Sent copy, through the submission's commit
    reply = message("<p-1@patient>", "Re: Suivi", in_reply_to="<g-1@x>", references="<g-1@x>",
                    sender=f"{INS_A}@patient.mssante.fr")
    sent = await store.enqueue(a, reply, f"{INS_A}@patient.mssante.fr", [Recipient(PRO, "hopital.mssante.fr")],
                               "reply", dt.timedelta(days=1), sent_folder="Sent")
    second = await store.deliver([a], message("<g-2@x>", "Re: Suivi", in_reply_to="<p-1@patient>",
                                              references="<g-1@x> <p-1@patient>"))
    members = await store.thread_members(a.id, a.ins, "<g-1@x>")
    assert members == [("INBOX", first[0].uid), ("Sent", sent.sent_uid), ("INBOX", second[0].uid)]
    assert await store.thread_members(a.id, a.ins, "<info-3@x>") == [("INBOX", first[0].uid + 4)]
    assert await store.thread_members(a.id, a.ins, "<nothing@x>") == []
    assert await store.thread_members(a.id, a.ins, None) == []
    assert len(await store.thread_members(a.id, a.ins, "<g-1@x>", limit=2)) == 2  # the newest two


async def test_the_key_says_nothing_and_differs_per_mailbox(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A, MailboxState.ACTIVE)
    b = await store.create_mailbox(INS_B, MailboxState.ACTIVE)
    await store.deliver([a, b], message("<secret-root@x>"))
    ka, kb = keys_in_db(db_path)
    assert ka and kb and ka != kb and len(ka) == 64
    assert b"secret-root" not in db_path.read_bytes()
    assert await store.thread_members(b.id, b.ins, "<secret-root@x>") == [("INBOX", 1)]
    await store.deliver([a], b"Subject: no ids\r\n\r\nbody\r\n")
    assert keys_in_db(db_path)[-1] == ""  # computed: no thread, not NULL (the backfill skips it)


async def test_append_and_copy_keep_the_thread(store: Store, db_path: Path, tmp_path: Path) -> None:
    a = await store.create_mailbox(INS_A, MailboxState.ACTIVE)
    spool = SpooledMessage(tmp_path)
    raw = message("<appended@x>", references="<root@x>")
    for i in range(0, len(raw), 7):  # the header section arrives in pieces
        spool.write(raw[i:i + 7])
    spool.finish()
    await store.deliver_spooled([a], spool, folder="Sent")
    spool.close()
    await store.deliver([a], message("<root@x>"))
    assert await store.thread_members(a.id, a.ins, "<root@x>") == [("Sent", 1), ("INBOX", 1)]
    await store.copy(a.id, "INBOX", [1], "Sent")
    assert await store.thread_members(a.id, a.ins, "<root@x>") == [("Sent", 1), ("INBOX", 1), ("Sent", 2)]


async def test_backfill_fills_rows_stored_before_the_index(store: Store, db_path: Path) -> None:
    a = await store.create_mailbox(INS_A, MailboxState.ACTIVE)
    await store.deliver([a], message("<old-1@x>"))
    await store.deliver([a], message("<old-2@x>", in_reply_to="<old-1@x>"))
    await store.deliver([a], b"Subject: no ids\r\n\r\nbody\r\n")
    with sqlite3.connect(db_path) as db:  # as migration 0011 leaves existing rows
        db.execute("UPDATE messages SET thread_key = NULL")
    assert await store.thread_members(a.id, a.ins, "<old-1@x>") == []
    assert await store.backfill_thread_keys(batch=2) == 3
    assert await store.thread_members(a.id, a.ins, "<old-1@x>") == [("INBOX", 1), ("INBOX", 2)]
    assert None not in keys_in_db(db_path)
    assert await store.backfill_thread_keys() == 0


async def test_members_are_found_by_the_thread_index_with_their_blobs(store: Store, db_path: Path) -> None:
    """The query walks the thread key's index, not the folder's every message (SQLite
    chose the folder's index: 2.5 ms a conversation page on 10,000 messages)."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from mailbox_store.thread import _MEMBER_BLOBS, _MEMBERS

    a = await store.create_mailbox(INS_A, MailboxState.ACTIVE)
    first = await store.deliver([a], message("<b-1@x>"))
    for i in range(30):
        await store.deliver([a], message(f"<other-{i}@x>", f"Information {i}"))
    await store.deliver([a], message("<b-2@x>", "Re: Suivi", in_reply_to="<b-1@x>"))
    got = await store.thread_member_blobs(a.id, a.ins, "<b-1@x>")
    assert [(f, u) for f, u, _ in got] == await store.thread_members(a.id, a.ins, "<b-1@x>")
    assert [(f, u) for f, u, _ in got] == [("INBOX", first[0].uid), ("INBOX", first[0].uid + 31)]
    inbox = await store.folder(a.id, "INBOX")
    assert inbox is not None
    blobs = await store.blob_ids(inbox.id, [first[0].uid, first[0].uid + 31])
    assert [b for _, _, b in got] == [blobs[first[0].uid], blobs[first[0].uid + 31]]
    assert await store.thread_member_blobs(a.id, a.ins, None) == []
    con = sqlite3.connect(db_path)
    try:
        for stmt in (_MEMBERS, _MEMBER_BLOBS):
            sql = str(stmt.compile(dialect=sqlite_dialect.dialect()))
            sql = sql.replace("__[POSTCOMPILE_folders]", "'INBOX', 'Sent'")
            plan = " | ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, ("k", a.id, 30, 0)))
            assert "ix_messages_thread" in plan, plan
    finally:
        con.close()
