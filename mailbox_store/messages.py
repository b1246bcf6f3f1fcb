"""Message operations of the store for IMAP: the folder snapshot a session starts
from, flags, expunge, copy and move. All writes go through the writer; every change is
published on the feed after its commit, so other sessions (IDLE) see it."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, insert, literal, select, update

from mailbox_store import expunged, imapreads
from mailbox_store.feed import Change, MessageMeta
from mailbox_store.folders import FolderError, _folder_id, delete_orphan_blobs
from mailbox_store.records import Snapshot  # noqa: F401 (its home was here)
from mailbox_store.models import Folder, Message, utc
from mailbox_store.modseq import bump, record_expunged
from mailbox_store.prepared import Prepared
from mailbox_store.rowlocks import lock_folders
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from mailbox_store.reader import Reader
    from mailbox_store.writer import Writer

SEEN = "\\Seen"
DELETED = "\\Deleted"


@dataclass(frozen=True, slots=True)
class FlagStore:
    """A STORE's outcome (RFC 7162 §3.1.3): the flags and modseq of the messages that
    still exist, and the UIDs left alone because they changed after UNCHANGEDSINCE."""

    flags: dict[int, frozenset[str]]
    modseqs: dict[int, int]
    modified: list[int]


@dataclass(frozen=True, slots=True)
class CopyResult:
    uidvalidity: int  # of the destination (RFC 4315 COPYUID)
    pairs: list[tuple[int, int]]  # (source uid, destination uid), ascending source uid



def _flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _flag_text(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


# Built once (issue 12 §3): STORE and EXPUNGE are most of IMAP's writes, and building
# a statement cost more Python than SQLite took to run it.
_UIDS = bindparam("uids", expanding=True)
# and run straight on the DBAPI cursor (prepared.py)
_FLAG_ROWS = Prepared(select(Message.uid, Message.flags, Message.modseq).where(Message.folder_id == bindparam("fid"),
                                                                               Message.uid.in_(_UIDS)))
_SET_FLAGS = Prepared(update(Message).where(Message.folder_id == bindparam("fid"), Message.uid == bindparam("u"))
                      .values(flags=bindparam("f"), modseq=bindparam("m")))
# flags are stored space-separated (_flag_text): padded with a space each side, the
# flag as a whole word is an exact test, so "\\Deleted" never matches a keyword that
# merely contains the text
_IS_DELETED = (literal(" ") + Message.flags + literal(" ")).contains(f" {DELETED} ", autoescape=True)
_DELETE_DELETED = delete(Message).where(Message.folder_id == bindparam("fid"), _IS_DELETED)
_DELETE_DELETED_AMONG = _DELETE_DELETED.where(Message.uid.in_(_UIDS))
_DELETE_DELETED_RETURNING = Prepared(_DELETE_DELETED.returning(Message.uid, Message.blob_id))
_DELETE_DELETED_AMONG_RETURNING = Prepared(_DELETE_DELETED_AMONG.returning(Message.uid, Message.blob_id))
_SELECT_DELETED = select(Message.uid, Message.blob_id).where(Message.folder_id == bindparam("fid"), _IS_DELETED)
_SELECT_DELETED_AMONG = Prepared(_SELECT_DELETED.where(Message.uid.in_(_UIDS)))
_P_SELECT_DELETED = Prepared(_SELECT_DELETED)
_DELETE_UIDS = Prepared(delete(Message).where(Message.folder_id == bindparam("fid"), Message.uid.in_(_UIDS)))


def _delete_deleted(conn: Connection, fid: int, among: list[int] | None) -> list[tuple[int, str]]:
    """Delete the folder's messages flagged \\Deleted (only those among these UIDs when
    given); returns their (uid, blob id). One statement where DELETE ... RETURNING
    exists (SQLite >= 3.35, PostgreSQL), else a SELECT and a DELETE."""
    params: dict[str, Any] = {"fid": fid}
    if among is not None:
        params["uids"] = among
    if conn.dialect.delete_returning:
        stmt = _DELETE_DELETED_RETURNING if among is None else _DELETE_DELETED_AMONG_RETURNING
        return [(uid, blob) for uid, blob in stmt.all(conn, params)]
    rows = [(uid, blob) for uid, blob in (_P_SELECT_DELETED if among is None else _SELECT_DELETED_AMONG).all(conn,
                                                                                                          params)]
    if rows:
        _DELETE_UIDS.execute(conn, {"fid": fid, "uids": [uid for uid, _ in rows]})
    return rows


class MessageOps(Repository):
    engine: Any
    reader: Reader  # IMAP's reads: one thread hop each (imapreads.py)
    writer: "Writer"

    async def snapshot(self, mailbox_id: int, name: str, since_uid: int = 0) -> Snapshot:
        """The folder as a session sees it on SELECT (or the messages above since_uid)."""
        return await self.reader.run(lambda conn: imapreads.snapshot(conn, mailbox_id, name, since_uid))

    async def modseqs_of(self, folder_id: int, uids: Iterable[int]) -> dict[int, int]:
        """The current MODSEQ of those UIDs that exist (RFC 7162 FETCH MODSEQ)."""
        uid_list = list(uids)
        return await self.reader.run(lambda conn: imapreads.modseqs_of(conn, folder_id, uid_list))

    async def blob_ids(self, folder_id: int, uids: Iterable[int]) -> dict[int, str]:
        """The sealed blob of each of those UIDs that exist: a message's identity for
        caches of what is derived from its bytes (copies share it; never reused)."""
        uid_list = list(uids)
        return await self.reader.run(lambda conn: imapreads.blob_ids(conn, folder_id, uid_list))

    async def vanished_since(self, folder_id: int, modseq: int) -> list[int]:
        """UIDs expunged from the folder after `modseq`, ascending (RFC 7162 §3.2.5.2);
        past the pruned horizon, every UID not in the folder (expunged.py)."""
        return await expunged.vanished_since(self, folder_id, modseq)  # type: ignore[arg-type]

    async def flags_of(self, folder_id: int, uids: Iterable[int]) -> dict[int, frozenset[str]]:
        uid_list = list(uids)
        return await self.reader.run(lambda conn: imapreads.flags_of(conn, folder_id, uid_list))

    async def store_flags(self, mailbox_id: int, folder: str, uids: Iterable[int], mode: str,
                          flags: Iterable[str]) -> dict[int, frozenset[str]]:
        """mode "+" adds, "-" removes, "" replaces (RFC 3501 §6.4.6). Returns the new
        flags of the messages that still exist."""
        return (await self.store_flags_if(mailbox_id, folder, uids, mode, flags)).flags

    async def store_flags_if(self, mailbox_id: int, folder: str, uids: Iterable[int], mode: str,
                             flags: Iterable[str], unchanged_since: int | None = None) -> FlagStore:
        """store_flags, conditional (RFC 7162 §3.1.3 UNCHANGEDSINCE): a message whose
        MODSEQ is above `unchanged_since` is left alone and reported as modified. The
        messages whose flags change get the folder's next modseq, all the same one."""
        wanted, uid_list = frozenset(flags), sorted(set(uids))

        def job(conn: Connection) -> tuple[FlagStore, list[Change]]:
            fid = _folder_id(conn, mailbox_id, folder)
            out: dict[int, frozenset[str]] = {}
            modseqs: dict[int, int] = {}
            modified: list[int] = []
            changed: list[tuple[int, frozenset[str]]] = []
            for start in range(0, len(uid_list), 500):
                for uid, text, modseq in _FLAG_ROWS.all(conn, {"fid": fid, "uids": uid_list[start:start + 500]}):
                    old = _flags(text)
                    if unchanged_since is not None and modseq > unchanged_since:
                        modified.append(uid)
                        out[uid], modseqs[uid] = old, modseq
                        continue
                    new = old | wanted if mode == "+" else old - wanted if mode == "-" else wanted
                    out[uid], modseqs[uid] = new, modseq
                    if new != old:
                        changed.append((uid, new))
            changes: list[Change] = []
            if changed:
                value = bump(conn, [fid])[fid]
                _SET_FLAGS.execute(conn, [{"fid": fid, "u": uid, "f": _flag_text(new), "m": value}
                                          for uid, new in changed])
                for uid, new in changed:
                    modseqs[uid] = value
                    changes.append(Change("message.flags", mailbox_id, folder, uid, flags=new, modseq=value))
            return FlagStore(out, modseqs, sorted(modified)), changes

        return await self.writer.submit(job)

    async def expunge(self, mailbox_id: int, folder: str, only_uids: Iterable[int] | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (among only_uids for UID EXPUNGE,
        RFC 4315 §2.1); returns their UIDs, ascending."""
        restrict = None if only_uids is None else sorted(set(only_uids))

        def job(conn: Connection) -> tuple[list[int], list[Change]]:
            fid = _folder_id(conn, mailbox_id, folder)
            # the folder's row lock before the first write, as every write path takes it
            # (rowlocks.py): deleting the messages first, then locking the folder (bump),
            # deadlocked another node's STORE, which locks the folder, then the messages
            # (PostgreSQL 40P01, seen with three nodes under imaptest: bench/imap_nodes.py)
            lock_folders(conn, [fid])
            rows = _delete_deleted(conn, fid, restrict)
            gone = sorted(uid for uid, _ in rows)
            value = 0
            if gone:
                delete_orphan_blobs(conn, {blob for _, blob in rows})
                value = bump(conn, [fid], locked=True)[fid]
                record_expunged(conn, fid, gone, value)
            return gone, [Change("message.expunged", mailbox_id, folder, u, modseq=value) for u in gone]

        return await self.writer.submit(job)

    async def copy(self, mailbox_id: int, source: str, uids: Iterable[int], target: str,
                   move: bool = False) -> CopyResult:
        """COPY/MOVE within one mailbox (RFC 3501 §6.4.7, RFC 6851): the copies share the
        sealed blob and its wrapped key (both bound to this mailbox and blob)."""
        uid_list = sorted(set(uids))

        def job(conn: Connection) -> tuple[CopyResult, list[Change]]:
            src = _folder_id(conn, mailbox_id, source)
            dst_id = conn.execute(select(Folder.id).where(Folder.mailbox_id == mailbox_id,
                                                          Folder.name == target)).scalar()
            if dst_id is None:
                raise FolderError(f"no folder {target}", "TRYCREATE")
            lock_folders(conn, [src, dst_id])  # before reading UIDNEXT (rowlocks.py)
            dst = conn.execute(select(Folder.id, Folder.uidvalidity, Folder.uidnext)
                               .where(Folder.id == dst_id)).one()
            rows = conn.execute(select(Message.uid, Message.blob_id, Message.key_wrapped, Message.flags,
                                       Message.internal_date, Message.size, Message.thread_key)
                                .where(Message.folder_id == src, Message.uid.in_(uid_list))
                                .order_by(Message.uid)).all()
            pairs, values = [], []
            bumped = bump(conn, [dst.id, *([src] if move and rows else [])], locked=True) if rows else {}
            for i, m in enumerate(rows):
                new_uid = dst.uidnext + i
                pairs.append((m.uid, new_uid))
                values.append({"folder_id": dst.id, "uid": new_uid, "blob_id": m.blob_id,
                               "key_wrapped": m.key_wrapped, "flags": m.flags,
                               "internal_date": m.internal_date, "size": m.size, "thread_key": m.thread_key, "modseq": bumped[dst.id]})
            changes = [Change("message.new", mailbox_id, target, v["uid"],
                              meta=MessageMeta(v["uid"], _flags(v["flags"]), utc(v["internal_date"]), v["size"],
                                               v["modseq"]), modseq=v["modseq"])
                       for v in values]
            if values:
                conn.execute(insert(Message), values)
                conn.execute(update(Folder).where(Folder.id == dst.id).values(uidnext=dst.uidnext + len(values)))
            if move and pairs:
                moved = [s for s, _ in pairs]
                conn.execute(delete(Message).where(Message.folder_id == src, Message.uid.in_(moved)))
                record_expunged(conn, src, moved, bumped[src])
                changes += [Change("message.expunged", mailbox_id, source, u, modseq=bumped[src]) for u in moved]
            return CopyResult(dst.uidvalidity, pairs), changes

        return await self.writer.submit(job)
