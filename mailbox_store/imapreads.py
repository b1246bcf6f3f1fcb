"""IMAP's reads, each a synchronous function run whole in one reader thread
(reader.py), on prebuilt statements.

Why (issue 12 §3, measured with py-spy under imaptest's stress, 10 clients with their
logins held): through the async driver every statement paid several hops between the
event loop and its connection's thread (cursor, execute, fetch, close, BEGIN, ROLLBACK),
each waiting its turn behind every other session's callbacks, and building the
statement (select(), where(), the cache key) cost more Python than SQLite took to run
it. LIST and STATUS averaged 670 ms a command. Here a command's reads are one hop, and
each statement is built once at import with bind parameters: SQLAlchemy finds its
compiled form in its cache by the statement object, with no construction per call.
Rows are Core rows, turned into the store's dataclasses, never ORM objects.

Every function takes the reader's connection first; the Store methods in
messages.py, folders.py, recent.py and store.py call them through `Reader.run`, and
`ImapReadOps` adds the reads that answer a whole command at once (LIST).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, select

from mailbox_store.feed import MessageMeta
from mailbox_store.prepared import Prepared
from mailbox_store.models import (Blob, ExpungedUid, Folder, Guardian, Mailbox, Message, ReceiptRequest, Subscription,
                                   utc)
from mailbox_store.repository import Repository
from mailbox_store.records import FolderError, FolderInfo, Snapshot, mailbox_info

_UIDS = bindparam("uids", expanding=True)  # an IN list (SQLAlchemy renders one ? per value)
IN_CHUNK = 500  # values in one IN list: SQLite's limit on host parameters is far above

_SEEN = Message.flags.contains("\\Seen", autoescape=True)  # explicit ESCAPE: PostgreSQL's LIKE
_UNSEEN = func.sum(case((Message.id.is_(None), 0), (_SEEN, 0), else_=1))
_RECENT = func.sum(case((Message.uid >= Folder.first_recent_uid, 1), else_=0))
# one query per folder list (issue 12 §3: STATUS and APPEND asked four): the
# subscription is a correlated EXISTS, RECENT one more aggregate of the same join
_SUBSCRIBED = (select(Subscription.id).where(Subscription.mailbox_id == Folder.mailbox_id,
                                              Subscription.name == Folder.name).correlate(Folder).exists())
_FOLDERS_BASE = (select(Folder.name, Folder.special_use, Folder.uidvalidity, Folder.uidnext,
                        func.count(Message.id), func.coalesce(_UNSEEN, 0), Folder.id, Folder.first_recent_uid,
                        Folder.highestmodseq, _SUBSCRIBED, func.coalesce(_RECENT, 0))
                 .outerjoin(Message, Message.folder_id == Folder.id))
_FOLDERS = (_FOLDERS_BASE.where(Folder.mailbox_id == bindparam("mid"))
            .group_by(Folder.id).order_by(Folder.id))
_FOLDER = (_FOLDERS_BASE.where(Folder.mailbox_id == bindparam("mid"), Folder.name == bindparam("name"))
           .group_by(Folder.id).order_by(Folder.id))
_SUBSCRIPTIONS = select(Subscription.name).where(Subscription.mailbox_id == bindparam("mid"))

_SNAP_FOLDER = select(Folder.id, Folder.uidvalidity, Folder.uidnext, Folder.first_recent_uid,
                      Folder.highestmodseq).where(Folder.mailbox_id == bindparam("mid"),
                                                  Folder.name == bindparam("name"))
_SNAP_MESSAGES = (select(Message.uid, Message.flags, Message.internal_date, Message.size, Message.modseq)
                  .where(Message.folder_id == bindparam("fid"), Message.uid > bindparam("since"))
                  .order_by(Message.uid))
_MODSEQS = select(Message.uid, Message.modseq).where(Message.folder_id == bindparam("fid"), Message.uid.in_(_UIDS))
_BLOB_IDS = select(Message.uid, Message.blob_id).where(Message.folder_id == bindparam("fid"),
                                                       Message.uid.in_(_UIDS))
_FLAGS = select(Message.uid, Message.flags).where(Message.folder_id == bindparam("fid"), Message.uid.in_(_UIDS))
_VANISHED = (select(ExpungedUid.uid).where(ExpungedUid.folder_id == bindparam("fid"),
                                           ExpungedUid.modseq > bindparam("modseq")).order_by(ExpungedUid.uid))
_FIRST_RECENT = select(Folder.first_recent_uid).where(Folder.id == bindparam("fid"))
_COUNT_FROM = select(func.count(Message.id)).where(Message.folder_id == bindparam("fid"),
                                                   Message.uid >= bindparam("first"))

MAILBOX_COLS = (Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email, Mailbox.created_at)
_MAILBOX_BY_INS = select(*MAILBOX_COLS).where(Mailbox.ins == bindparam("ins"))
_MAILBOX_BY_ID = select(*MAILBOX_COLS).where(Mailbox.id == bindparam("mid"))
# the mailbox cache's lookups and renewals (cache.py, store.mailboxes_by_ins): every RCPT, every login
MAILBOXES_BY_INS = Prepared(select(*MAILBOX_COLS).where(Mailbox.ins.in_(bindparam("ins", expanding=True))))
_WARDS = (select(*MAILBOX_COLS).join(Guardian, Guardian.child_id == Mailbox.id)
          .where(Guardian.guardian_id == bindparam("mid")).order_by(Mailbox.ins))
# fetch_raw_many's rows: the sealed bytes are opened by the caller (the crypto pool for large ones)
_RAW = (select(Mailbox.id, Message.uid, Message.blob_id, Message.key_wrapped, Blob.sealed)
        .join(Folder, Folder.mailbox_id == Mailbox.id).join(Message, Message.folder_id == Folder.id)
        .join(Blob, Blob.id == Message.blob_id)
        .where(Mailbox.ins == bindparam("ins"), Folder.name == bindparam("name"), Message.uid.in_(_UIDS)))

# run straight on the DBAPI cursor (prepared.py): SQLAlchemy's execute path around these
# cost several times what SQLite took to run them (issue 12 §3)
_P_FOLDERS, _P_FOLDER, _P_SUBSCRIPTIONS = Prepared(_FOLDERS), Prepared(_FOLDER), Prepared(_SUBSCRIPTIONS)
_P_SNAP_FOLDER, _P_SNAP_MESSAGES = Prepared(_SNAP_FOLDER), Prepared(_SNAP_MESSAGES)
_P_MODSEQS, _P_BLOB_IDS, _P_FLAGS = Prepared(_MODSEQS), Prepared(_BLOB_IDS), Prepared(_FLAGS)
_P_VANISHED, _P_FIRST_RECENT, _P_COUNT_FROM = Prepared(_VANISHED), Prepared(_FIRST_RECENT), Prepared(_COUNT_FROM)
_P_MAILBOX_BY_INS, _P_MAILBOX_BY_ID, _P_WARDS = Prepared(_MAILBOX_BY_INS), Prepared(_MAILBOX_BY_ID), Prepared(_WARDS)
_P_RAW = Prepared(_RAW)


def folder_rows(conn: Connection, mailbox_id: int, name: str | None = None) -> list[Any]:
    """Every folder of the mailbox with its counts (or only the one called name), as
    FolderInfo."""
    rows = _P_FOLDERS.all(conn, {"mid": mailbox_id}) if name is None else \
        _P_FOLDER.all(conn, {"mid": mailbox_id, "name": name})
    return [FolderInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[9]), r[7], r[8], r[10]) for r in rows]


def subscriptions(conn: Connection, mailbox_id: int) -> set[str]:
    return set(_P_SUBSCRIPTIONS.scalars(conn, {"mid": mailbox_id}))


def snapshot(conn: Connection, mailbox_id: int, name: str, since_uid: int = 0) -> Any:
    """The folder as a session sees it on SELECT (messages.Snapshot); FolderError
    NONEXISTENT when there is no such folder."""
    folder = _P_SNAP_FOLDER.first(conn, {"mid": mailbox_id, "name": name})
    if folder is None:
        raise FolderError(f"no folder {name}", "NONEXISTENT")
    rows = _P_SNAP_MESSAGES.all(conn, {"fid": folder.id, "since": since_uid})
    return Snapshot(folder.id, name, folder.uidvalidity, folder.uidnext,
                    [MessageMeta(uid, frozenset(flags.split()), utc(when), size, modseq)
                     for uid, flags, when, size, modseq in rows],
                    folder.first_recent_uid, folder.highestmodseq)


def uidvalidity(conn: Connection, mailbox_id: int, name: str) -> int | None:
    row = _P_SNAP_FOLDER.first(conn, {"mid": mailbox_id, "name": name})
    return None if row is None else row.uidvalidity


def _by_uid(conn: Connection, stmt: Prepared, folder_id: int, uids: list[int]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(uids), IN_CHUNK):
        out += stmt.all(conn, {"fid": folder_id, "uids": uids[start:start + IN_CHUNK]})
    return out


def modseqs_of(conn: Connection, folder_id: int, uids: list[int]) -> dict[int, int]:
    return dict(_by_uid(conn, _P_MODSEQS, folder_id, uids))


def blob_ids(conn: Connection, folder_id: int, uids: list[int]) -> dict[int, str]:
    return dict(_by_uid(conn, _P_BLOB_IDS, folder_id, uids))


def flags_of(conn: Connection, folder_id: int, uids: list[int]) -> dict[int, frozenset[str]]:
    return {uid: frozenset(flags.split()) for uid, flags in _by_uid(conn, _P_FLAGS, folder_id, uids)}


def vanished_since(conn: Connection, folder_id: int, modseq: int) -> list[int]:
    return _P_VANISHED.scalars(conn, {"fid": folder_id, "modseq": modseq})


def recent_count(conn: Connection, folder_id: int) -> int:
    first = _P_FIRST_RECENT.scalar(conn, {"fid": folder_id})
    if first is None:
        return 0
    return _P_COUNT_FROM.scalar(conn, {"fid": folder_id, "first": first}) or 0


def mailbox_row(conn: Connection, ins: str) -> Any:
    return _P_MAILBOX_BY_INS.first(conn, {"ins": ins})


def mailbox_row_by_id(conn: Connection, mailbox_id: int) -> Any:
    return _P_MAILBOX_BY_ID.first(conn, {"mid": mailbox_id})


def ward_rows(conn: Connection, guardian_id: int) -> list[Any]:
    return _P_WARDS.all(conn, {"mid": guardian_id})


def raw_rows(conn: Connection, ins: str, folder: str, uids: list[int]) -> list[Any]:
    """(mailbox id, uid, blob id, wrapped key, sealed bytes) of those UIDs that exist."""
    out: list[Any] = []
    for start in range(0, len(uids), IN_CHUNK):
        out += _P_RAW.all(conn, {"ins": ins, "name": folder, "uids": uids[start:start + IN_CHUNK]})
    return out


@dataclass(frozen=True, slots=True)
class ListView:
    """What LIST and LSUB need, read in one hop: the user's folders, each ward (a
    child the user is a guardian of) with theirs, and the user's subscriptions."""
    folders: list[Any]  # folders.FolderInfo
    wards: list[tuple[Any, list[Any]]]  # (store.MailboxInfo, its FolderInfo list), by INS
    subscribed: set[str]


def list_view(conn: Connection, mailbox_id: int) -> ListView:
    wards = [mailbox_info(r) for r in ward_rows(conn, mailbox_id)]
    return ListView(folder_rows(conn, mailbox_id), [(w, folder_rows(conn, w.id)) for w in wards],
                    subscriptions(conn, mailbox_id))


# a message's read receipt not sent yet (relay/delivery/receipts.py asks on every \Seen)
_RECEIPT_PENDING = (select(ReceiptRequest.blob_id)
                    .join(Message, Message.blob_id == ReceiptRequest.blob_id)
                    .join(Folder, Folder.id == Message.folder_id)
                    .where(Folder.mailbox_id == bindparam("mid"), Folder.name == bindparam("folder"),
                           Message.uid == bindparam("uid"), ReceiptRequest.mailbox_id == bindparam("mid"),
                           ReceiptRequest.sent_at.is_(None))
                    .limit(1))
_P_RECEIPT_PENDING = Prepared(_RECEIPT_PENDING)


def receipt_pending(conn: Connection, mailbox_id: int, folder: str, uid: int) -> bool:
    return _P_RECEIPT_PENDING.first(conn, {"mid": mailbox_id, "folder": folder, "uid": uid}) is not None


class ImapReadOps(Repository):
    """Reads that answer a whole IMAP command in one reader hop."""

    async def receipt_pending(self, mailbox_id: int, folder: str, uid: int) -> bool:
        """Whether the message has a read receipt not sent yet, read without the
        writer: almost every \\Seen has none, and a writer job each (a commit, an
        fsync) was a tenth of the writer's time under imaptest's stress (issue 12 §3).
        A committed request is always seen (the flag change is published after its
        delivery committed); claim_receipt still decides, in the writer, who sends it."""
        return await self.reader.run(lambda conn: receipt_pending(conn, mailbox_id, folder, uid))

    async def list_view(self, mailbox_id: int) -> ListView:
        return await self.reader.run(lambda conn: list_view(conn, mailbox_id))

    async def folder_uidvalidity(self, mailbox_id: int, name: str) -> int | None:
        """The folder's UIDVALIDITY, None when it does not exist: what APPEND needs
        (TRYCREATE, APPENDUID), without counting the folder's messages."""
        return await self.reader.run(lambda conn: uidvalidity(conn, mailbox_id, name))
