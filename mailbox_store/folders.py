"""Folder operations of the store (IMAP LIST/CREATE/DELETE/RENAME/SUBSCRIBE/STATUS).

Folder names are Unicode strings with "/" as the hierarchy separator; INBOX is spelled
"INBOX". The special-use folders every mailbox gets (models.DEFAULT_FOLDERS) and INBOX
cannot be deleted or renamed away (RFC 6154 §1: clients rely on them)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, select, update

from mailbox_store import imapreads
from mailbox_store.feed import Change
from mailbox_store.records import FolderError, FolderInfo  # noqa: F401 (their home was here)
from mailbox_store.models import Blob, Document, Folder, Mailbox, Message, OutboundEntry, ReceiptRequest, Subscription
from mailbox_store.modseq import bump, record_expunged
from mailbox_store.prepared import Prepared
from mailbox_store.rowlocks import lock_folders
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from mailbox_store.reader import Reader
    from mailbox_store.writer import Writer

SEPARATOR = "/"
# Names under which IMAP shows other people's folders (RFC 2342); nobody's own folder
# may take them, or a guardian's view and the patient's own folders would collide.
RESERVED_ROOTS = ("other users",)


# Components that name no folder of their own: "." and ".." are the current and parent
# directory wherever a name becomes a path (exports, archives, a client's local cache),
# and an empty one ("a//b") is no level of the hierarchy (RFC 9051 §5.1).
_PATH_COMPONENTS = ("", ".", "..")


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be a new folder's name, or None. The reason never quotes the
    name: it goes into a tagged reply, and a literal may carry any byte."""
    if not name:
        return "empty folder name"
    if name.upper() == "INBOX":
        return "INBOX already exists"
    components = name.split(SEPARATOR)
    if any(c in _PATH_COMPONENTS for c in components):
        return "'.', '..' and empty levels are not allowed in a folder name"
    # RFC 9051 §5.1: names are Net-Unicode (RFC 5198), so no control characters (C0, DEL, C1)
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        return "control characters are not allowed in a folder name"
    if components[0].casefold() in RESERVED_ROOTS:
        return f"'{components[0]}' is reserved for other users' folders"
    return None


def new_uidvalidity(conn: Connection, mailbox_id: int) -> int:
    """A UIDVALIDITY this mailbox never gave a folder (RFC 3501 §2.3.1.1: a folder deleted
    and re-created, even within the same second, must not get its old one back), and
    record it as the mailbox's highest."""
    last = conn.execute(select(Mailbox.last_uidvalidity).where(Mailbox.id == mailbox_id)).scalar() or 0
    used = conn.execute(select(func.max(Folder.uidvalidity)).where(Folder.mailbox_id == mailbox_id)).scalar() or 0
    value = max(int(time.time()), last + 1, used + 1)
    conn.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(last_uidvalidity=value))
    return value


# every STORE, EXPUNGE and COPY job starts here: on the DBAPI cursor (prepared.py)
_FOLDER_ID = Prepared(select(Folder.id).where(Folder.mailbox_id == bindparam("mid"),
                                              Folder.name == bindparam("name")))


def _folder_id(conn: Connection, mailbox_id: int, name: str) -> int:
    fid = _FOLDER_ID.scalar(conn, {"mid": mailbox_id, "name": name})
    if fid is None:
        raise FolderError(f"no folder {name}", "NONEXISTENT")
    return fid


def delete_orphan_blobs(conn: Connection, blob_ids: set[str]) -> None:
    """A blob lives as long as one message, dossier document or queue entry points at
    it (copies share blobs; a filed attachment outlives its message; a sent message's
    Sent copy and its queue entries share one blob)."""
    if not blob_ids:
        return
    # two prebuilt statements, the orphan test inside them (issue 12 §3: an EXPUNGE
    # spent five statements here: three SELECTs of users and two DELETEs)
    ids = sorted(blob_ids)
    for start in range(0, len(ids), 500):
        chunk = {"ids": ids[start:start + 500]}
        _ORPHAN_RECEIPTS.execute(conn, chunk)
        _ORPHAN_BLOBS.execute(conn, chunk)


def _unused(blob_id: Any) -> Any:
    """No message, dossier document or queue entry points at this blob."""
    return ~exists().where(Message.blob_id == blob_id) & ~exists().where(Document.blob_id == blob_id) \
        & ~exists().where(OutboundEntry.blob_id == blob_id)


# on the DBAPI cursor (prepared.py): every EXPUNGE runs both
_ORPHAN_RECEIPTS = Prepared(delete(ReceiptRequest).where(ReceiptRequest.blob_id.in_(bindparam("ids", expanding=True)),
                                                         _unused(ReceiptRequest.blob_id)))
_ORPHAN_BLOBS = Prepared(delete(Blob).where(Blob.id.in_(bindparam("ids", expanding=True)), _unused(Blob.id)))


class FolderOps(Repository):
    engine: Any
    reader: Reader  # IMAP's reads: one thread hop each (imapreads.py)
    writer: "Writer"

    async def list_folders(self, mailbox_id: int, name: str | None = None) -> list[FolderInfo]:
        """Every folder of the mailbox with its counts, or only the one called name
        (one query, one reader hop: imapreads.py)."""
        return await self.reader.run(lambda conn: imapreads.folder_rows(conn, mailbox_id, name))

    async def subscriptions(self, mailbox_id: int) -> set[str]:
        """The subscribed names, whether or not a folder has them (RFC 3501 §6.3.6)."""
        return await self.reader.run(lambda conn: imapreads.subscriptions(conn, mailbox_id))

    async def folder(self, mailbox_id: int, name: str) -> FolderInfo | None:
        # one folder's counts, not every folder's (STATUS and APPEND ask this: issue 12 §3,
        # it was a tenth of the loop's time under imaptest's stress)
        found = await self.list_folders(mailbox_id, name)
        return found[0] if found else None

    async def create_folder(self, mailbox_id: int, name: str) -> FolderInfo:
        name = name.rstrip(SEPARATOR)
        problem = _name_problem(name)
        if problem is not None:
            raise FolderError(problem, "CANNOT")  # RFC 5530 §3: the name can never be created

        def job(conn: Connection) -> tuple[FolderInfo, list[Change]]:
            existing = set(conn.execute(select(Folder.name).where(Folder.mailbox_id == mailbox_id)).scalars())
            if name in existing:
                raise FolderError(f"folder {name} already exists", "ALREADYEXISTS")
            # RFC 3501 §2.3.1.1: a folder re-created under an old name must get a new
            # UIDVALIDITY; strictly above every value this mailbox ever used keeps that true
            uidvalidity = new_uidvalidity(conn, mailbox_id)
            # RFC 3501 §6.3.3: create the missing superior names too
            parts = name.split(SEPARATOR)
            created = None
            for i in range(1, len(parts) + 1):
                sub = SEPARATOR.join(parts[:i])
                if sub not in existing:
                    # RFC 3501 §6.3.6: CREATE does not subscribe (SUBSCRIBE does)
                    fid = conn.execute(insert(Folder).values(
                        mailbox_id=mailbox_id, name=sub, special_use=None, uidvalidity=uidvalidity,
                        uidnext=1).returning(Folder.id)).scalar_one()
                    existing.add(sub)
                    created = FolderInfo(sub, None, uidvalidity, 1, 0, 0, fid, False)
            assert created is not None
            return created, [Change("folder.created", mailbox_id, name, 0)]

        return await self.writer.submit(job)

    async def delete_folder(self, mailbox_id: int, name: str) -> None:
        def job(conn: Connection) -> tuple[int, list[Change]]:
            row = conn.execute(select(Folder.id, Folder.special_use)
                               .where(Folder.mailbox_id == mailbox_id, Folder.name == name)).first()
            if row is None:
                raise FolderError(f"no folder {name}", "NONEXISTENT")
            if name == "INBOX" or row.special_use:
                raise FolderError(f"{name} cannot be deleted")
            if conn.execute(select(func.count(Folder.id)).where(
                    Folder.mailbox_id == mailbox_id, Folder.name.startswith(name + SEPARATOR))).scalar():
                raise FolderError(f"{name} has subfolders; delete them first", "INUSE")
            blobs = set(conn.execute(select(Message.blob_id).where(Message.folder_id == row.id)).scalars())
            conn.execute(delete(Message).where(Message.folder_id == row.id))
            conn.execute(delete(Folder).where(Folder.id == row.id))
            delete_orphan_blobs(conn, blobs)
            return row.id, [Change("folder.deleted", mailbox_id, name, 0)]

        gone = await self.writer.submit(job)
        # SQLite may give the id to the next folder created: its \Recent mark starts afresh
        self.core.recent_marks.pop(gone, None)  # recent.py's memory, shared through the core

    async def rename_folder(self, mailbox_id: int, old: str, new: str) -> None:
        new = new.rstrip(SEPARATOR)
        problem = _name_problem(new)
        if problem is not None:
            raise FolderError(problem, "CANNOT")  # RFC 5530 §3: the name can never be created

        def job(conn: Connection) -> tuple[None, list[Change]]:
            rows = dict(conn.execute(select(Folder.name, Folder.id).where(Folder.mailbox_id == mailbox_id)).all())
            if old not in rows:
                raise FolderError(f"no folder {old}", "NONEXISTENT")
            if new in rows:
                raise FolderError(f"folder {new} already exists", "ALREADYEXISTS")
            special = conn.execute(select(Folder.special_use).where(Folder.id == rows[old])).scalar()
            if special:
                raise FolderError(f"{old} cannot be renamed")
            if old == "INBOX":
                # RFC 3501 §6.3.5: renaming INBOX moves its messages to a new folder and
                # leaves INBOX empty; INBOX locked first: a delivery by another node
                # must not slip a UID above the new folder's UIDNEXT (rowlocks.py)
                lock_folders(conn, [rows["INBOX"]])
                info, _ = job_create(conn, new)
                moved = list(conn.execute(select(Message.uid).where(Message.folder_id == rows["INBOX"])).scalars())
                conn.execute(update(Message).where(Message.folder_id == rows["INBOX"])
                             .values(folder_id=info))
                # RFC 7162: INBOX's messages vanished from it; the new folder starts
                # above every modseq its messages carry
                value = bump(conn, [rows["INBOX"]], locked=True)[rows["INBOX"]]
                record_expunged(conn, rows["INBOX"], moved, value)
                conn.execute(update(Folder).where(Folder.id == info).values(highestmodseq=value))
                return None, [Change("folder.renamed", mailbox_id, old, 0)]
            for name, fid in rows.items():
                if name == old or name.startswith(old + SEPARATOR):
                    conn.execute(update(Folder).where(Folder.id == fid).values(name=new + name[len(old):]))
            # the subscriptions follow the folders they name, as Dovecot does
            subs = set(conn.execute(select(Subscription.name).where(Subscription.mailbox_id == mailbox_id)).scalars())
            for name in subs:
                if (name == old or name.startswith(old + SEPARATOR)) and new + name[len(old):] not in subs:
                    conn.execute(update(Subscription).where(Subscription.mailbox_id == mailbox_id,
                                                            Subscription.name == name)
                                 .values(name=new + name[len(old):]))
            return None, [Change("folder.renamed", mailbox_id, old, 0)]

        def job_create(conn: Connection, name: str) -> tuple[int, None]:
            uidvalidity = new_uidvalidity(conn, mailbox_id)
            fid = conn.execute(insert(Folder).values(
                mailbox_id=mailbox_id, name=name, special_use=None, uidvalidity=uidvalidity,
                uidnext=conn.execute(select(Folder.uidnext).where(
                    Folder.mailbox_id == mailbox_id, Folder.name == "INBOX")).scalar_one()
                ).returning(Folder.id)).scalar_one()
            return fid, None

        await self.writer.submit(job)

    async def set_subscribed(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        """SUBSCRIBE an existing folder (RFC 3501 §6.3.6 lets the server check it exists),
        or UNSUBSCRIBE a subscribed name, whether or not its folder still exists."""
        def job(conn: Connection) -> tuple[None, list[Change]]:
            listed = conn.execute(select(Subscription.id).where(
                Subscription.mailbox_id == mailbox_id, Subscription.name == name)).scalar()
            if not subscribed:
                if listed is None:
                    _folder_id(conn, mailbox_id, name)  # an existing folder: nothing to do
                    return None, []
                conn.execute(delete(Subscription).where(Subscription.id == listed))
                return None, []
            _folder_id(conn, mailbox_id, name)
            if listed is None:
                conn.execute(insert(Subscription).values(mailbox_id=mailbox_id, name=name))
            return None, []

        await self.writer.submit(job)
