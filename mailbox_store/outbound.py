"""The outbound queue in the store (issue 3 §3).

Implementation notes:
- One row per recipient; the message's bytes are one sealed blob shared by its rows
  and, for a patient's message, by its copy in their Sent folder: the Sent copy and the
  queue entries are written in one transaction, so a message acknowledged to the
  patient (250 on submission) is both kept and queued, or neither.
- A row is deleted only once the recipient's server acknowledged the message, or it
  failed for good and its DSN is stored (the DSN first: a crash between the two can
  repeat a DSN, never lose one): a restart resumes from the rows, and nothing whose
  acknowledgement was committed is sent again.
- Claiming is the runner's job (one process per SQLite store, storelock); on PostgreSQL
  several nodes would claim with FOR UPDATE SKIP LOCKED (DESIGN.md §5), not built yet.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, insert, select, update

from mailbox_store.budgets import BudgetClaim
from mailbox_store.crypto import open_blob, seal_blob, wrap_content_key
from mailbox_store.errors import StoreError
from mailbox_store.feed import Change, MessageMeta
from mailbox_store.folders import FolderError, delete_orphan_blobs
from mailbox_store.models import Blob, Folder, Mailbox, Message, OutboundEntry, utc
from mailbox_store.thread import thread_key, thread_root_of
from mailbox_store.modseq import bump
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from mailbox_store.records import MailboxInfo
    from mailbox_store.writer import Writer


class NoSuchEntry(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    domain: str  # lower case: routing and per-destination limits
    route: str = "mssante"  # or "smarthost" (notifications to personal addresses)


@dataclass(frozen=True, slots=True)
class QueueItem:
    id: str
    envelope_id: str
    mailbox_id: int
    ins: str  # of mailbox_id: unwraps the content key
    kind: str
    route: str
    mail_from: str
    rcpt: str
    domain: str
    size: int
    attempts: int
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    expires_at: dt.datetime
    last_error: str


@dataclass(frozen=True, slots=True)
class Submitted:
    envelope_id: str
    sent_uid: int | None  # UID of the copy in the Sent folder


@dataclass(frozen=True)
class PreparedOutgoing:
    """A message of ours sealed for the queue, not yet written: `apply` writes it on
    the writer's connection, inside whatever transaction the caller runs."""

    mailbox_id: int
    blob_id: str
    envelope_id: str
    sealed: bytes
    key_wrapped: bytes
    size: int
    rows: list[dict[str, Any]]
    thread_key: str | None
    sent_folder: str | None
    when: dt.datetime
    # a budget unit this message spends, taken in its commit (budgets.py); spent
    # meanwhile by another commit: nothing is written (claim.granted is False)
    budget: BudgetClaim | None = None

    def apply(self, conn: Connection) -> tuple[Submitted, list[Change]]:
        if self.budget is not None and not self.budget.take(conn):
            return Submitted(self.envelope_id, None), []
        conn.execute(insert(Blob).values(id=self.blob_id, sealed=self.sealed))
        changes: list[Change] = []
        uid = None
        if self.sent_folder is not None:
            folder = conn.execute(select(Folder.id, Folder.uidnext).where(
                Folder.mailbox_id == self.mailbox_id, Folder.name == self.sent_folder).with_for_update()).first()
            if folder is None:
                raise FolderError(f"no folder {self.sent_folder}", "NONEXISTENT")
            uid = folder.uidnext
            conn.execute(update(Folder).where(Folder.id == folder.id).values(uidnext=uid + 1))
            modseq = bump(conn, [folder.id])[folder.id]  # RFC 7162 (modseq.py)
            conn.execute(insert(Message).values(folder_id=folder.id, uid=uid, blob_id=self.blob_id,
                                                key_wrapped=self.key_wrapped, flags="\\Seen",
                                                internal_date=self.when, size=self.size,
                                                thread_key=self.thread_key, modseq=modseq))
            changes.append(Change("message.new", self.mailbox_id, self.sent_folder, uid,
                                  meta=MessageMeta(uid, frozenset({"\\Seen"}), self.when, self.size, modseq),
                                  modseq=modseq))
        if self.rows:
            conn.execute(insert(OutboundEntry), self.rows)
            changes.append(Change("queue.new", self.mailbox_id, "", 0))
        return Submitted(self.envelope_id, uid), changes



_COLUMNS = (OutboundEntry.id, OutboundEntry.envelope_id, OutboundEntry.mailbox_id, Mailbox.ins, OutboundEntry.kind,
            OutboundEntry.route, OutboundEntry.mail_from, OutboundEntry.rcpt, OutboundEntry.domain,
            OutboundEntry.size, OutboundEntry.attempts, OutboundEntry.next_attempt_at, OutboundEntry.created_at,
            OutboundEntry.expires_at, OutboundEntry.last_error)


def _item(r: Any) -> QueueItem:
    return QueueItem(r.id, r.envelope_id, r.mailbox_id, r.ins, r.kind, r.route, r.mail_from, r.rcpt, r.domain,
                     r.size, r.attempts, utc(r.next_attempt_at), utc(r.created_at), utc(r.expires_at),
                     r.last_error)


class QueueOps(Repository):
    engine: Any
    writer: "Writer"

    async def enqueue(self, mailbox: "MailboxInfo", raw: bytes, mail_from: str, recipients: Sequence[Recipient],
                      kind: str, lifetime: dt.timedelta, sent_folder: str | None = None) -> Submitted:
        """Queue `raw` for each recipient (and keep it in `sent_folder`, \\Seen), durably,
        in one transaction. `mailbox` is the sender (or the postmaster mailbox)."""
        prepared = await self.prepare_outgoing(mailbox, raw, mail_from, recipients, kind, lifetime, sent_folder)
        return await self.writer.submit(prepared.apply)

    async def commit_outgoing(self, prepared: "PreparedOutgoing") -> Submitted:
        """Write what prepare_outgoing() sealed, in a transaction of its own."""
        return await self.writer.submit(prepared.apply)

    async def prepare_outgoing(self, mailbox: "MailboxInfo", raw: bytes, mail_from: str,
                               recipients: Sequence[Recipient], kind: str, lifetime: dt.timedelta,
                               sent_folder: str | None = None) -> "PreparedOutgoing":
        """Everything enqueue() writes, sealed and ready, but not written: a caller hands
        it to a transaction of its own (the MX's TEST acknowledgement goes in the
        transaction of the message it answers, Store.deliver(outgoing=...))."""
        now = dt.datetime.now(dt.timezone.utc)
        blob_id, envelope_id = uuid.uuid4().hex, uuid.uuid4().hex
        content_key, sealed = await self.off_loop(len(raw), seal_blob, blob_id, raw)
        key_wrapped = wrap_content_key(await self._data_key(mailbox.id, mailbox.ins), mailbox.ins, blob_id,
                                       content_key)
        rows = [{"id": uuid.uuid4().hex, "envelope_id": envelope_id, "mailbox_id": mailbox.id, "blob_id": blob_id,
                 "key_wrapped": key_wrapped, "kind": kind, "route": r.route, "mail_from": mail_from,
                 "rcpt": r.address, "domain": r.domain.lower(), "size": len(raw), "attempts": 0,
                 "next_attempt_at": now, "created_at": now, "expires_at": now + lifetime, "last_error": ""}
                for r in recipients]
        threaded = thread_key(await self._thread_hmac_key(mailbox.id, mailbox.ins), thread_root_of(raw))
        return PreparedOutgoing(mailbox.id, blob_id, envelope_id, sealed, key_wrapped, len(raw), rows, threaded,
                                sent_folder, now)

    async def queue_items(self, due_before: dt.datetime | None = None, limit: int = 1000,
                          exclude_ids: Sequence[str] = (), exclude_domains: Sequence[str] = ()) -> list[QueueItem]:
        """Entries by next attempt time (only those due by `due_before` when given),
        leaving out entries and domains the runner cannot take now (so one busy domain
        does not hide the others behind it)."""
        q = select(*_COLUMNS).join(Mailbox, Mailbox.id == OutboundEntry.mailbox_id)
        if due_before is not None:
            q = q.where(OutboundEntry.next_attempt_at <= due_before)
        if exclude_ids:
            q = q.where(OutboundEntry.id.not_in(list(exclude_ids)))
        if exclude_domains:
            q = q.where(OutboundEntry.domain.not_in(list(exclude_domains)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q.order_by(OutboundEntry.next_attempt_at, OutboundEntry.id)
                                       .limit(limit))).all()
        return [_item(r) for r in rows]

    async def queue_item(self, entry_id: str) -> QueueItem:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*_COLUMNS).join(Mailbox, Mailbox.id == OutboundEntry.mailbox_id)
                                      .where(OutboundEntry.id == entry_id))).first()
        if row is None:
            raise NoSuchEntry(f"no queue entry {entry_id}")
        return _item(row)

    async def queue_content(self, item: QueueItem) -> bytes:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(OutboundEntry.blob_id, OutboundEntry.key_wrapped, Blob.sealed)
                                      .join(Blob, Blob.id == OutboundEntry.blob_id)
                                      .where(OutboundEntry.id == item.id))).first()
        if row is None:
            raise NoSuchEntry(f"no queue entry {item.id}")
        return await self.off_loop(len(row.sealed), open_blob, await self._data_key(item.mailbox_id, item.ins),
                                   item.ins, row.blob_id, row.key_wrapped, row.sealed)

    async def queue_stats(self) -> tuple[int, dt.datetime | None, dt.datetime | None]:
        """Depth, the creation time of the oldest entry (metrics), and the earliest
        next attempt (when the runner must look again)."""
        async with self.engine.connect() as conn:
            n, oldest, due = (await conn.execute(select(func.count(), func.min(OutboundEntry.created_at),
                                                        func.min(OutboundEntry.next_attempt_at))
                                                 .select_from(OutboundEntry))).one()
        return n, utc(oldest) if oldest is not None else None, utc(due) if due is not None else None

    async def queue_remove(self, entry_id: str) -> None:
        """Delete an entry: delivered, failed for good (after its DSN is stored), or
        deleted by the operator."""
        def job(conn: Connection) -> tuple[None, list[Change]]:
            blob_id = conn.execute(select(OutboundEntry.blob_id).where(OutboundEntry.id == entry_id)).scalar()
            if blob_id is None:
                raise NoSuchEntry(f"no queue entry {entry_id}")
            conn.execute(delete(OutboundEntry).where(OutboundEntry.id == entry_id))
            delete_orphan_blobs(conn, {blob_id})
            return None, []

        await self.writer.submit(job)

    async def queue_retry(self, entry_id: str) -> None:
        """Due now (`mssante-relay queue retry`)."""
        def job(conn: Connection) -> tuple[None, list[Change]]:
            n = conn.execute(update(OutboundEntry).where(OutboundEntry.id == entry_id).values(
                next_attempt_at=dt.datetime.now(dt.timezone.utc))).rowcount
            if n != 1:
                raise NoSuchEntry(f"no queue entry {entry_id}")
            return None, [Change("queue.new", 0, "", 0)]

        await self.writer.submit(job)
