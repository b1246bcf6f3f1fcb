"""Folder row locks: what keeps UIDs, UIDNEXT and modseqs strictly increasing per
folder when several nodes write to one PostgreSQL (issue 14 §2).

Implementation notes:
- Every write that reads a folder's UIDNEXT or HIGHESTMODSEQ and writes it back takes
  the folder's row lock first (`SELECT … FOR UPDATE`, held to COMMIT): a second node's
  delivery to the same folder waits for the first to commit, then reads the new values.
  So UIDs are also *committed* in increasing order per folder: a client never sees UID
  7 and later UID 6 appear (RFC 3501 §2.3.1.1, RFC 7162 §3.1.2 for modseqs).
- Locks are taken in folder id order, all of them before the first write, so two
  transactions touching the same folders (a MOVE A→B beside a MOVE B→A, two batches of
  deliveries) queue behind each other instead of deadlocking.
- SQLite has no row locks and needs none: the writer's BEGIN IMMEDIATE holds the whole
  database, and one daemon per file is the rule (relay/daemon/storelock.py).
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from mailbox_store.models import Folder


def row_locks(conn: Connection) -> bool:
    return conn.dialect.name != "sqlite"


def lock_folders(conn: Connection, folder_ids: Iterable[int]) -> None:
    """Hold the row locks of these folders until the transaction ends (id order)."""
    ids = sorted(set(folder_ids))
    if ids and row_locks(conn):
        conn.execute(select(Folder.id).where(Folder.id.in_(ids)).order_by(Folder.id).with_for_update()).all()
