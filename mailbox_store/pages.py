"""Reads the webmail needs beside IMAP's (relay/web/): one page of a folder newest
first, one message's row, and one page of the audit log newest first. Each is one
indexed query: a page of 50 out of 10,000 messages never loads the other 9,950."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, literal, select

from mailbox_store.feed import MessageMeta
from mailbox_store.reader import Reader
from mailbox_store.crypto import open_blob
from mailbox_store.models import AuditEvent, Blob, Folder, Guardian, Mailbox, Message, Pharmacy, utc
from mailbox_store.records import AuditRecord, mailbox_info
from mailbox_store.repository import Repository


@dataclass(frozen=True, slots=True)
class FolderPage:
    uidvalidity: int
    total: int  # messages in the folder
    unseen: int
    messages: list[MessageMeta]  # newest (highest UID) first


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a webmail request comes from, as the database says now: the account, the
    children it represents, and the pharmacies allowed to each of them."""
    user: Any  # store.MailboxInfo
    wards: list[Any]  # store.MailboxInfo, by INS
    pharmacies: dict[int, list[str]]  # mailbox id (the user's or a ward's) -> addresses, sorted


@dataclass(frozen=True, slots=True)
class AuditPage:
    total: int
    events: list[Any]  # store.AuditRecord, newest first


# Built once: a statement object costs more to construct than SQLite takes to run it
# (SQLAlchemy caches only the compiled SQL), and these run at every webmail request.
_MESSAGE_WITH_BLOB = (
    select(Message.uid, Message.flags, Message.internal_date, Message.size, Message.blob_id, Message.key_wrapped,
           Blob.sealed)
    .join(Folder, Folder.id == Message.folder_id).join(Blob, Blob.id == Message.blob_id)
    .where(Folder.mailbox_id == bindparam("mid"), Folder.name == bindparam("folder"), Message.uid == bindparam("uid")))
_IDENTITY_COLS = (Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email, Mailbox.created_at)
_IDENTITY = (select(*_IDENTITY_COLS, literal(0).label("ward")).where(Mailbox.id == bindparam("uid"))
             .union_all(select(*_IDENTITY_COLS, literal(1).label("ward"))
                        .where(Mailbox.id.in_(select(Guardian.child_id)
                                              .where(Guardian.guardian_id == bindparam("uid"))))))
_PHARMACIES = (select(Pharmacy.mailbox_id, Pharmacy.address)
               .where((Pharmacy.mailbox_id == bindparam("uid"))
                      | Pharmacy.mailbox_id.in_(select(Guardian.child_id)
                                                .where(Guardian.guardian_id == bindparam("uid"))))
               .order_by(Pharmacy.mailbox_id, Pharmacy.address))
_FOLDER = select(Folder.id, Folder.uidvalidity).where(Folder.mailbox_id == bindparam("mid"),
                                                      Folder.name == bindparam("folder"))
_COUNTS = (select(func.count(Message.id),
                  # explicit ESCAPE (folders.py): PostgreSQL's LIKE escapes with a backslash
                  func.coalesce(func.sum(case((Message.flags.contains("\\Seen", autoescape=True), 0),
                                              else_=1)), 0))
           .where(Message.folder_id == bindparam("fid")))
_PAGE = (select(Message.uid, Message.flags, Message.internal_date, Message.size)
         .where(Message.folder_id == bindparam("fid")).order_by(Message.uid.desc())
         .offset(bindparam("offset")).limit(bindparam("limit")))


def _meta(r: Any) -> MessageMeta:
    return MessageMeta(r.uid, frozenset(r.flags.split()), utc(r.internal_date), r.size)


class PageOps(Repository):
    engine: Any
    reader: Reader

    async def folder_page(self, mailbox_id: int, folder: str, offset: int, limit: int,
                          uids: list[int] | None = None, with_counts: bool = True) -> FolderPage | None:
        """Messages of a folder, newest first, from `offset`; None when the folder does
        not exist. With `uids`, only those (a search's hits). Without `with_counts`,
        total and unseen are -1 (counting reads every row: the caller knows them)."""
        def read(conn: Connection) -> FolderPage | None:
            row = conn.execute(_FOLDER, {"mid": mailbox_id, "folder": folder}).first()
            if row is None:
                return None
            total, unseen = conn.execute(_COUNTS, {"fid": row.id}).one() if with_counts else (-1, -1)
            if uids is None:
                rows = conn.execute(_PAGE, {"fid": row.id, "offset": offset, "limit": limit}).all()
            else:
                rows = conn.execute(
                    select(Message.uid, Message.flags, Message.internal_date, Message.size)
                    .where(Message.folder_id == row.id, Message.uid.in_(uids[:1000]))
                    .order_by(Message.uid.desc()).offset(offset).limit(limit)).all()
            return FolderPage(row.uidvalidity, total, unseen, [_meta(r) for r in rows])

        return await self.reader.run(read)

    async def message_meta(self, mailbox_id: int, folder: str, uid: int) -> tuple[int, MessageMeta] | None:
        """(folder UIDVALIDITY, the message's row), or None when there is no such message."""
        async with self.engine.connect() as conn:
            r = (await conn.execute(
                select(Folder.uidvalidity, Message.uid, Message.flags, Message.internal_date, Message.size)
                .join(Message, Message.folder_id == Folder.id)
                .where(Folder.mailbox_id == mailbox_id, Folder.name == folder, Message.uid == uid))).first()
        return (r.uidvalidity, _meta(r)) if r else None

    async def web_identity(self, user_id: int) -> Identity | None:
        """The account, its wards and their pharmacies in one connection and two
        queries (every webmail request asks, so that a guardian removed or a mailbox
        closed by the CLI a second ago counts at the next click); None: no such account."""

        def read(conn: Connection) -> tuple[list[Any], list[Any]]:
            rows = conn.execute(_IDENTITY, {"uid": user_id}).all()
            return rows, conn.execute(_PHARMACIES, {"uid": user_id}).all() if rows else []

        rows, pharmacies = await self.reader.run_light(read)
        if not any(r.ward == 0 for r in rows):
            return None
        user = next(mailbox_info(r) for r in rows if r.ward == 0)
        wards = sorted((mailbox_info(r) for r in rows if r.ward == 1), key=lambda m: m.ins)
        out: dict[int, list[str]] = {}
        for p in pharmacies:
            out.setdefault(p.mailbox_id, []).append(p.address)
        return Identity(user, wards, out)

    async def message_with_raw(self, mailbox: Any, folder: str, uid: int) -> tuple[MessageMeta, bytes] | None:
        """A message's row and its decrypted bytes in one query (the webmail's message
        pages): None when the mailbox (store.MailboxInfo) has no such message. The
        bytes are opened in the reader's thread, never on the event loop."""
        aead = await self._data_key(mailbox.id, mailbox.ins)

        def read(conn: Connection) -> tuple[MessageMeta, bytes] | None:
            r = conn.execute(_MESSAGE_WITH_BLOB, {"mid": mailbox.id, "folder": folder, "uid": uid}).first()
            if r is None:
                return None
            return _meta(r), open_blob(aead, mailbox.ins, r.blob_id, r.key_wrapped, r.sealed)

        return await self.reader.run(read)

    async def message_unless_known(self, mailbox: Any, folder: str, uid: int,
                                   known: Callable[[str], bool]) -> tuple[MessageMeta, str, bytes | None] | None:
        """A message's row, its sealed blob id and its decrypted bytes, in one query,
        the bytes left sealed (None) when `known(blob_id)` says the caller already holds
        what it derives from them (a blob never changes: relay/web/viewcache.py). None
        when the mailbox has no such message. `known` runs in the reader's thread: a
        dict membership test, nothing more."""
        aead = await self._data_key(mailbox.id, mailbox.ins)

        def read(conn: Connection) -> tuple[MessageMeta, str, bytes | None] | None:
            r = conn.execute(_MESSAGE_WITH_BLOB, {"mid": mailbox.id, "folder": folder, "uid": uid}).first()
            if r is None:
                return None
            if known(r.blob_id):
                return _meta(r), r.blob_id, None
            return _meta(r), r.blob_id, open_blob(aead, mailbox.ins, r.blob_id, r.key_wrapped, r.sealed)

        return await self.reader.run(read)

    async def audit_page(self, mailbox_id: int, offset: int, limit: int) -> AuditPage:
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count(AuditEvent.id))
                                        .where(AuditEvent.mailbox_id == mailbox_id))).scalar_one()
            rows = (await conn.execute(
                select(AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.detail, AuditEvent.source)
                .where(AuditEvent.mailbox_id == mailbox_id).order_by(AuditEvent.id.desc())
                .offset(offset).limit(limit))).all()
        return AuditPage(total, [AuditRecord(utc(r.at), r.actor, r.action, r.detail, r.source) for r in rows])
