"""Pruning of the expunged UIDs QRESYNC keeps (RFC 7162 §3.2.5.2), issue 12.

Implementation notes:
- `expunged_uids` grows with every EXPUNGE and was never pruned. A folder keeps its
  `keep` most recent entries; older ones are deleted and the folder's
  `expunge_horizon` rises to the highest modseq deleted, in the same transaction.
- A client resynchronising from a modseq at or above the horizon gets the exact list
  (messages.py vanished_since); from an older one, RFC 7162 §3.2.5.2 lets the server
  answer VANISHED (EARLIER) with every UID of the client's known range that is not in
  the mailbox: a superset the client handles like any other (those UIDs are gone).
- Bounded per run: at most `max_rows` rows deleted, in at most MAX_FOLDERS folders.
  The candidates are read on a read connection; the cut-off is decided again inside
  the writer job, so an EXPUNGE committed meanwhile is never half-pruned.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, func, select, update

from mailbox_store import imapreads
from mailbox_store.feed import Change
from mailbox_store.models import ExpungedUid, Folder, Message

if TYPE_CHECKING:
    from mailbox_store.store import Store

MAX_FOLDERS = 1000  # folders pruned in one run


@dataclass(frozen=True, slots=True)
class Pruned:
    folders: int
    rows: int


async def prune_expunged(store: "Store", keep: int, max_rows: int) -> Pruned:
    """Forget the expunged UIDs of each folder beyond its `keep` most recent ones, at most
    `max_rows` of them in this run; raises each pruned folder's horizon accordingly."""
    async with store.engine.connect() as conn:
        over = (await conn.execute(
            select(ExpungedUid.folder_id, func.count()).group_by(ExpungedUid.folder_id)
            .having(func.count() > keep).order_by(ExpungedUid.folder_id).limit(MAX_FOLDERS))).all()
    if not over:
        return Pruned(0, 0)

    def job(conn: Connection) -> tuple[Pruned, list[Change]]:
        folders = rows = 0
        for folder_id, _count in over:
            budget = max_rows - rows
            if budget <= 0:
                break
            count = conn.execute(select(func.count()).select_from(ExpungedUid)
                                 .where(ExpungedUid.folder_id == folder_id)).scalar() or 0
            excess = min(count - keep, budget)
            if excess <= 0:
                continue
            # the modseq of the excess-th oldest entry: everything up to it is forgotten
            # (entries sharing that modseq go too: the horizon must be exact)
            cutoff = conn.execute(select(ExpungedUid.modseq).where(ExpungedUid.folder_id == folder_id)
                                  .order_by(ExpungedUid.modseq).offset(excess - 1).limit(1)).scalar()
            if cutoff is None:
                continue
            rows += conn.execute(delete(ExpungedUid).where(ExpungedUid.folder_id == folder_id,
                                                           ExpungedUid.modseq <= cutoff)).rowcount or 0
            conn.execute(update(Folder).where(Folder.id == folder_id, Folder.expunge_horizon < cutoff)
                         .values(expunge_horizon=cutoff))
            folders += 1
        return Pruned(folders, rows), []

    result: Pruned = await store.writer.submit(job)
    return result


async def vanished_since(store: "Store", folder_id: int, modseq: int) -> list[int]:
    """UIDs expunged from the folder after `modseq`, ascending (RFC 7162 §3.2.5.2): the
    exact list while `modseq` is at or above the folder's pruned horizon, else every UID
    below UIDNEXT that is not in the folder (a superset the RFC allows). One reader hop."""
    return await store.reader.run(lambda conn: vanished_in(conn, folder_id, modseq))


def vanished_in(conn: Connection, folder_id: int, modseq: int) -> list[int]:
    row = conn.execute(select(Folder.expunge_horizon, Folder.uidnext).where(Folder.id == folder_id)).one_or_none()
    if row is None:
        return []
    horizon, uidnext = row
    if modseq >= horizon:
        return imapreads.vanished_since(conn, folder_id, modseq)
    present = conn.execute(select(Message.uid).where(Message.folder_id == folder_id).order_by(Message.uid)).scalars()
    return missing_uids(present, uidnext - 1)


def missing_uids(present: Iterable[int], largest: int) -> list[int]:
    """The UIDs 1..largest not in `present` (ascending)."""
    out: list[int] = []
    expected = 1
    for uid in present:
        if uid > largest:
            break
        out.extend(range(expected, uid))
        expected = uid + 1
    out.extend(range(expected, largest + 1))
    return out
