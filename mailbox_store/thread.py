"""The conversation index (issue 11): beside each message row, a keyed hash of its
thread root, so the webmail shows a whole conversation with one indexed query instead
of decrypting a window of recent messages.

- The root is policy.conversation.thread_of_headers: the same rule that opens and
  continues conversations at delivery (DESIGN.md §4 "Professional initiates").
- The key is an HMAC-SHA256 under a key derived from the mailbox's data key (like the
  dossier's `dedupe`): the database says which messages go together, never what their
  Message-IDs are, and the same root in two mailboxes gives two unrelated keys.
- It is written in the transaction that stores the row: MX delivery (group commit),
  the Sent copy of a submission or web reply, IMAP APPEND, COPY/MOVE (copied).
- Rows stored before migration 0011 have NULL: `backfill_thread_keys` fills them in
  bounded batches (the daemon runs it in the background after start); "" means
  "computed: the message names no thread".
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, literal_column, select, update

from mailbox_store.crypto import open_blob
from mailbox_store.feed import Change
from mailbox_store.models import Blob, Folder, Mailbox, Message
from mailbox_store.repository import Repository
from policy.conversation import thread_of_headers
from policy.headers import header_block, parse_headers

if TYPE_CHECKING:
    from mailbox_store.reader import Reader
    from mailbox_store.writer import Writer

THREAD_KEY_LABEL = b"mssante-relay/thread-key/v1"
HEAD_MAX = 256 * 1024  # header octets read for the root; RFC 5322 sets no limit, we do
BACKFILL_BATCH = 50  # rows decrypted at once (one 25 MB message each at worst)
# built once: constructing this select on every conversation view was 8 % of the event
# loop's time under bench/web_load.py (py-spy --gil)
# "folder_id + 0": the thread key's index, never the folder's, finds the rows. Without
# it SQLite (no ANALYZE statistics) walked the folder's every message for each
# conversation page: 2.5 ms of CPU a page on a folder of 10,000, against 0.05 ms (issue
# 11 "Benchmark", py-spy). PostgreSQL plans it from its statistics either way.
_MEMBERS = (select(Folder.name, Message.uid).join(Folder, Folder.id == Message.folder_id + literal_column("0"))
            .where(Message.thread_key == bindparam("key"), Folder.mailbox_id == bindparam("mid"),
                   Folder.name.in_(bindparam("folders", expanding=True)))
            .order_by(Message.internal_date.desc(), Message.id.desc()).limit(bindparam("limit")))

_MEMBER_BLOBS = (select(Folder.name, Message.uid, Message.blob_id).join(Folder, Folder.id == Message.folder_id + literal_column("0"))
                 .where(Message.thread_key == bindparam("key"), Folder.mailbox_id == bindparam("mid"),
                        Folder.name.in_(bindparam("folders", expanding=True)))
                 .order_by(Message.internal_date.desc(), Message.id.desc()).limit(bindparam("limit")))


def derive_thread_key(raw_data_key: bytes) -> bytes:
    """The mailbox's HMAC key for thread keys: never the encryption key itself."""
    return hmac.new(raw_data_key, THREAD_KEY_LABEL, hashlib.sha256).digest()


def thread_root_of(raw: bytes) -> str | None:
    """The thread root of a stored message's bytes (its header section only)."""
    try:
        return thread_of_headers(parse_headers(header_block(raw[:HEAD_MAX])))
    except Exception:  # odd headers name no thread; the message is stored all the same
        return None


def thread_key(key: bytes, root: str | None) -> str:
    """The stored value for a root: "" for none (so a computed row is never NULL)."""
    return "" if root is None else hmac.new(key, root.encode("utf-8", "surrogateescape"),
                                            hashlib.sha256).hexdigest()


class ThreadOps(Repository):
    engine: Any
    writer: "Writer"
    reader: "Reader"

    async def thread_key_for(self, mailbox_id: int, ins: str, root: str | None) -> str:
        return thread_key(await self._thread_hmac_key(mailbox_id, ins), root)

    async def thread_members(self, mailbox_id: int, ins: str, root: str | None,
                             folders: Sequence[str] = ("INBOX", "Sent"),
                             limit: int = 30) -> list[tuple[str, int]]:
        """(folder, uid) of the newest `limit` messages of that conversation in those
        folders, oldest first; none when the root is None. One indexed query."""
        if root is None:
            return []
        key = await self.thread_key_for(mailbox_id, ins, root)
        params = {"key": key, "mid": mailbox_id, "folders": list(folders), "limit": limit}
        rows = await self.reader.run_light(lambda conn: conn.execute(_MEMBERS, params).all())
        return [(r.name, r.uid) for r in reversed(rows)]

    async def thread_member_blobs(self, mailbox_id: int, ins: str, root: str | None,
                                  folders: Sequence[str] = ("INBOX", "Sent"),
                                  limit: int = 30) -> list[tuple[str, int, str]]:
        """thread_members with each message's sealed blob id (folder, uid, blob id):
        the key of what a caller derived from its bytes, which never change."""
        if root is None:
            return []
        key = await self.thread_key_for(mailbox_id, ins, root)
        params = {"key": key, "mid": mailbox_id, "folders": list(folders), "limit": limit}
        rows = await self.reader.run_light(lambda conn: conn.execute(_MEMBER_BLOBS, params).all())
        return [(r.name, r.uid, r.blob_id) for r in reversed(rows)]

    async def backfill_thread_keys(self, batch: int = BACKFILL_BATCH, max_rows: int | None = None,
                                   max_seconds: float | None = None) -> int:
        """Compute the thread key of rows that have none (stored before migration
        0011), a batch at a time, decrypting in a worker thread; stops when none is
        left, or after `max_rows` / `max_seconds`. Returns the rows filled."""
        done, started, last_id = 0, time.monotonic(), 0
        while max_rows is None or done < max_rows:
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            async with self.engine.connect() as conn:
                rows = (await conn.execute(
                    select(Message.id, Mailbox.id.label("mailbox_id"), Mailbox.ins, Message.blob_id,
                           Message.key_wrapped, Blob.sealed)
                    .join(Folder, Folder.id == Message.folder_id).join(Mailbox, Mailbox.id == Folder.mailbox_id)
                    .join(Blob, Blob.id == Message.blob_id)
                    .where(Message.thread_key.is_(None), Message.id > last_id)
                    .order_by(Message.id).limit(batch))).all()
            if not rows:
                break
            last_id = rows[-1].id
            keys = {r.mailbox_id: (await self._data_key(r.mailbox_id, r.ins),
                                   await self._thread_hmac_key(r.mailbox_id, r.ins)) for r in rows}

            def compute(rows: Sequence[Any] = rows) -> list[dict[str, Any]]:
                out = []
                for r in rows:
                    aead, hkey = keys[r.mailbox_id]
                    try:
                        raw = open_blob(aead, r.ins, r.blob_id, r.key_wrapped, r.sealed)
                    except Exception:  # a blob that does not open names no thread here
                        root = None
                    else:
                        root = thread_root_of(raw)
                    out.append({"mid": r.id, "k": thread_key(hkey, root)})
                return out

            updates = await asyncio.to_thread(compute)

            def job(conn: Connection, updates: list[dict[str, Any]] = updates) -> tuple[int, list[Change]]:
                # only rows still without a key: a concurrent write wins
                n = conn.execute(update(Message).where(Message.id == bindparam("mid"), Message.thread_key.is_(None))
                                 .values(thread_key=bindparam("k")), updates).rowcount
                return n, []

            await self.writer.submit(job)
            done += len(updates)
        return done
