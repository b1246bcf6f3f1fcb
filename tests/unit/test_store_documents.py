"""mailbox_store/documents.py: the dossier's documents in the store: filed with the
message in one transaction, sealed, once only, downloadable and deletable with an
audit trail, on a real SQLite file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailbox_store.crypto import MasterKey
from mailbox_store.documents import NewDocument, NoSuchDocument
from mailbox_store.feed import Feed
from mailbox_store.models import DOSSIER_FOLDER
from mailbox_store.store import Store
from policy.recipients import MailboxState
from sqlalchemy import text

from tests.pg import on_postgresql, sql

INS_A = "279035121518989"
INS_B = "185052A00412368"
PDF = b"%PDF-1.4\n% fake but distinctive content 0123456789\n%%EOF\n"
RAW = (b"From: dr.house@hopital.mssante.fr\r\nSubject: CR\r\nMessage-ID: <m1@hopital.mssante.fr>\r\n\r\n"
       b"Bonjour\r\n")


@pytest.fixture
async def store(tmp_path: Path, store_url: str):
    s = await Store.open(store_url, MasterKey(os.urandom(32)))
    yield s
    await s.close()


def doc(content: bytes = PDF, source: str = "<m1@hopital.mssante.fr>", title: str = "Compte rendu") -> NewDocument:
    return NewDocument(source, content, {"title": title, "mime_type": "application/pdf"})


async def test_documents_are_filed_with_the_delivery_and_read_back(store: Store, tmp_path: Path, store_url: str) -> None:
    a = await store.create_mailbox(INS_A, state=MailboxState.ACTIVE)
    b = await store.create_mailbox(INS_B, state=MailboxState.ACTIVE)
    await store.deliver([a, b], RAW, documents=[(a, [doc()]), (b, [doc(title="Autre titre")])], source="192.0.2.1")
    [da] = await store.documents(a)
    [db] = await store.documents(b)
    assert (da.meta["title"], db.meta["title"]) == ("Compte rendu", "Autre titre")
    assert da.size == len(PDF) and da.filed_by == "mx" and da.filed_at.tzinfo is not None
    got, content = await store.document(a, da.id, actor="admin", source="cli")
    assert content == PDF and got.id == da.id
    # one sealed blob shared by both recipients, as for messages; nothing in clear
    with sql(store_url) as con:
        assert con.execute(text("SELECT COUNT(DISTINCT blob_id) FROM dossier_documents")).scalar() == 1
    if not on_postgresql():  # the database's files on disk
        dump = b"".join(p.read_bytes() for p in tmp_path.glob("relay.db*"))
        assert b"fake but distinctive" not in dump and "Compte rendu".encode() not in dump
    actions = [(e.action, e.detail) for e in await store.audit_events(a.id)]
    assert ("dossier.filed", f"document {da.id}") in actions
    assert ("dossier.download", f"document {da.id}") in actions


async def test_a_redelivered_message_files_nothing_twice(store: Store) -> None:
    a = await store.create_mailbox(INS_A, state=MailboxState.ACTIVE)
    for _ in range(2):
        await store.deliver([a], RAW, documents=[(a, [doc(), doc()])])
    assert len(await store.documents(a)) == 1
    assert await store.file_documents(a, [doc()], "patient") == []
    # the same content from another message is another filing; new content too
    assert len(await store.file_documents(a, [doc(source="<m2@x>"), doc(b"%PDF-1.4 other")], "patient")) == 2
    assert len(await store.documents(a)) == 3


async def test_delete_is_audited_and_keeps_shared_blobs(store: Store, tmp_path: Path, store_url: str) -> None:
    a = await store.create_mailbox(INS_A, state=MailboxState.ACTIVE)
    b = await store.create_mailbox(INS_B, state=MailboxState.ACTIVE)
    await store.deliver([a, b], RAW, documents=[(a, [doc()]), (b, [doc()])])
    [da], [db] = await store.documents(a), await store.documents(b)
    await store.delete_document(a, da.id, actor="admin", source="cli")
    assert await store.documents(a) == []
    with pytest.raises(NoSuchDocument):
        await store.document(a, da.id, actor="admin")
    with pytest.raises(NoSuchDocument):
        await store.delete_document(a, da.id, actor="admin")
    with pytest.raises(NoSuchDocument):  # another patient's document id is not found either
        await store.document(a, db.id, actor="admin")
    assert (await store.document(b, db.id, actor="admin"))[1] == PDF
    assert ("dossier.delete", f"document {da.id}") in [(e.action, e.detail) for e in await store.audit_events(a.id)]
    # the filed document outlives its message: expunging the message keeps the blob
    snap = await store.snapshot(b.id, "INBOX")
    await store.store_flags(b.id, "INBOX", [m.uid for m in snap.messages], "+", ["\\Deleted"])
    await store.expunge(b.id, "INBOX")
    assert (await store.document(b, db.id, actor="admin"))[1] == PDF
    await store.delete_document(b, db.id, actor="admin")
    with sql(store_url) as con:
        # the document's blob is gone; what remains is the message still in a's INBOX
        assert con.execute(text("SELECT COUNT(*) FROM blobs WHERE id NOT IN (SELECT blob_id FROM messages)")
                           ).scalar() == 0


async def test_metadata_moved_to_another_row_does_not_open(store: Store, tmp_path: Path, store_url: str) -> None:
    a = await store.create_mailbox(INS_A, state=MailboxState.ACTIVE)
    await store.file_documents(a, [doc(title="un"), doc(b"%PDF-1.4 two", title="deux")], "patient")
    one, two = await store.documents(a)
    with sql(store_url) as con:
        sealed = con.execute(text("SELECT meta_sealed FROM dossier_documents WHERE id=:i"), {"i": one.id}).scalar()
        con.execute(text("UPDATE dossier_documents SET meta_sealed=:s WHERE id=:i"), {"s": sealed, "i": two.id})
    from mailbox_store.crypto import CryptoError
    with pytest.raises(CryptoError):
        await store.documents(a)


async def test_every_mailbox_has_the_dossier_folder_and_filing_is_published(tmp_path: Path, store_url: str) -> None:
    feed = Feed()
    s = await Store.open(store_url, MasterKey(os.urandom(32)), feed=feed)
    try:
        a = await s.create_mailbox(INS_A, state=MailboxState.ACTIVE)
        assert DOSSIER_FOLDER in [f.name for f in await s.folders(INS_A)]
        q = feed.subscribe()
        await s.deliver([a], RAW, documents=[(a, [doc()])])
        kinds = [q.get_nowait().kind for _ in range(q.qsize())]
        assert kinds == ["message.new", "dossier.new"]
    finally:
        await s.close()


async def test_deliveries_of_one_batch_file_as_they_would_one_by_one(store: Store) -> None:
    # the writer files the documents of a whole batch of deliveries in three statements
    # (insert_documents_together): a document a delivery of the same batch already
    # filed is not filed again, and the audit log keeps the deliveries' order
    from mailbox_store.documents import insert_documents_together

    a = await store.create_mailbox(INS_A, state=MailboxState.ACTIVE)
    b = await store.create_mailbox(INS_B, state=MailboxState.ACTIVE)
    first = await store.seal_documents([(a, [doc()])], "mx", "192.0.2.1")
    again = await store.seal_documents([(a, [doc()]), (b, [doc(b"%PDF-1.4 b")])], "mx", "192.0.2.2",
                                       not_filed=[(b, "no title")])
    outcome = await store.writer.submit(lambda conn: (insert_documents_together(conn, [first, again]), []))
    assert [len(filed) for filed, _ in outcome] == [1, 1]  # the second filing of a's document: skipped
    assert outcome[1][0][0][0] == b.id and [c.kind for c in outcome[1][1]] == ["dossier.new"]
    assert len(await store.documents(a)) == 1 and len(await store.documents(b)) == 1
    trail = [(e.action, e.source) for e in await store.audit_events(b.id)
             if e.action.startswith("dossier.")]
    assert trail == [("dossier.not_filed", "192.0.2.2"), ("dossier.filed", "192.0.2.2")]
