"""Which of a folder's messages still have a read receipt to send (RFC 8098), for many
UIDs in one read (relay/delivery/receipts.py).

Why: every flag change that leaves \\Seen set is a candidate, and a STORE on 100 seen
messages asked the reader 100 times, one thread hop and one task each, under
imaptest's stress (issue 12 §3). One query per folder and burst now; almost every
answer is empty. claim_receipt, in the writer, still decides who sends a receipt.
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, select

from mailbox_store.models import Folder, Message, ReceiptRequest

IN_CHUNK = 500  # UIDs in one IN list (SQLite's host-parameter limit is far above)

_PENDING = (select(Message.uid)
            .join(Folder, Folder.id == Message.folder_id)
            .join(ReceiptRequest, ReceiptRequest.blob_id == Message.blob_id)
            .where(Folder.mailbox_id == bindparam("mid"), Folder.name == bindparam("folder"),
                   Message.uid.in_(bindparam("uids", expanding=True)),
                   ReceiptRequest.mailbox_id == bindparam("mid"), ReceiptRequest.sent_at.is_(None)))


def receipts_pending(conn: Connection, mailbox_id: int, folder: str, uids: Sequence[int]) -> set[int]:
    """The UIDs among `uids` whose message has a read receipt not sent yet."""
    out: set[int] = set()
    ordered = sorted(set(uids))
    for start in range(0, len(ordered), IN_CHUNK):
        out.update(conn.execute(_PENDING, {"mid": mailbox_id, "folder": folder,
                                           "uids": ordered[start:start + IN_CHUNK]}).scalars())
    return out
