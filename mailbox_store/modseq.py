"""Modification sequences (RFC 7162 CONDSTORE/QRESYNC), kept by the store itself.

Implementation notes:
- Every write path that adds, flags or removes a message calls `bump` inside its own
  writer transaction and stamps the rows it touched with the folder's new value: the MX
  delivery's group commit, APPEND, STORE, COPY/MOVE, EXPUNGE, the Sent copy of a
  submission, an INBOX rename, an admin purge. Protocol fronts and the webmail only call
  the store, so they cannot forget it.
- One operation is one modseq per folder, whatever the number of messages it touches
  (RFC 7162 §3.1.3 allows messages changed together to share it): a batch of 64
  deliveries costs one UPDATE per folder, not one per message.
- An expunged UID is kept with its modseq (`expunged_uids`) so QRESYNC can answer
  VANISHED (EARLIER) (RFC 7162 §3.2.5.2); it goes with its folder.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, select, update

from mailbox_store.models import ExpungedUid, Folder
from mailbox_store.prepared import Prepared, prepared_insert
from mailbox_store.rowlocks import lock_folders


def bump(conn: Connection, folder_ids: Iterable[int], locked: bool = False) -> dict[int, int]:
    """Raise each folder's HIGHESTMODSEQ by one; returns {folder id: new value}.
    locked: the caller already holds these folders' row locks (rowlocks.py): EXPUNGE,
    COPY/MOVE, renaming INBOX and deliveries lock them before their first write."""
    ids = sorted(set(folder_ids))
    if not ids:
        return {}
    if not locked:
        lock_folders(conn, ids)  # PostgreSQL: id order, so two nodes never deadlock (rowlocks.py)
    if conn.dialect.update_returning:  # one statement (SQLite >= 3.35, PostgreSQL): issue 12 §3
        return dict(_BUMP_RETURNING.all(conn, {"ids": ids}))
    _BUMP.execute(conn, {"ids": ids})
    return dict(_MODSEQS.all(conn, {"ids": ids}))


# built once: every write path runs these (issue 12 §3, statement building was most
# of the writer thread's Python time), on the DBAPI cursor (prepared.py)
_IDS = bindparam("ids", expanding=True)
_BUMP_STMT = update(Folder).where(Folder.id.in_(_IDS)).values(highestmodseq=Folder.highestmodseq + 1)
_BUMP = Prepared(_BUMP_STMT)
_BUMP_RETURNING = Prepared(_BUMP_STMT.returning(Folder.id, Folder.highestmodseq))
_MODSEQS = Prepared(select(Folder.id, Folder.highestmodseq).where(Folder.id.in_(_IDS)))
_RECORD = prepared_insert(ExpungedUid, ("folder_id", "uid", "modseq"))


def record_expunged(conn: Connection, folder_id: int, uids: Iterable[int], modseq: int) -> None:
    rows = [{"folder_id": folder_id, "uid": u, "modseq": modseq} for u in uids]
    if rows:
        _RECORD.execute(conn, rows)
