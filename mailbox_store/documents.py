"""Documents of the patient's dossier in the store (DESIGN.md §4 "Dossier").

Implementation notes:
- A document's content is sealed like a message body (crypto.py): one blob per
  distinct content, its content key wrapped for each mailbox that files it. Its
  metadata (title, category, author) is health content too: sealed as JSON with the
  mailbox's data key, bound to the document id.
- Filing is idempotent: `dedupe` is an HMAC, under a key derived from the mailbox's
  data key, of the source message id and the content's SHA-256. The unique constraint
  (mailbox_id, dedupe) and a look-up inside the writer transaction file a redelivered
  message, or a second COPY into "Dossier médical", exactly once. The key survives
  master-key rotation (data keys do not change), unlike log pseudonyms.
- Documents filed at delivery are inserted in the delivery's own transaction
  (store._Delivery), so the MX says 250 only once they are committed.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, insert, select, tuple_, update

from mailbox_store.crypto import blob_aad, open_blob, open_sealed, seal, seal_blob, wrap_content_key
from mailbox_store.errors import StoreError
from mailbox_store.feed import Change
from mailbox_store.folders import delete_orphan_blobs
from mailbox_store.models import AuditEvent, Blob, Document, Mailbox, utc
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from mailbox_store.records import MailboxInfo
    from mailbox_store.writer import Writer


class NoSuchDocument(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A document to file: its bytes and its metadata (JSON-serialisable; the dossier
    bridge decides the fields)."""

    source_id: str  # the source message's Message-ID, or a digest of a message without one
    content: bytes = field(repr=False)
    meta: Mapping[str, Any] = field(repr=False)
    sha256: str = ""  # of the content; computed when not given (it is costly: give it)
    # where the content lies in the message it is delivered with (models.Document);
    # None: the content is stored as a blob of its own
    locator: str | None = None

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.content).hexdigest())


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: str
    size: int
    filed_at: dt.datetime
    filed_by: str
    meta: dict[str, Any]
    locator: str | None = None  # set: document() returned the message the content lies in


@dataclass
class SealedDocuments:
    """Documents sealed outside the writer, ready to insert (the writer only inserts)."""

    blobs: dict[str, bytes] = field(default_factory=dict)  # blob id -> sealed content
    rows: list[dict[str, Any]] = field(default_factory=list)  # dossier_documents rows
    source: str = ""  # client address, for the audit log
    # documents not filed, for the audit log: (mailbox id, actor, reason)
    not_filed: list[tuple[int, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows or self.not_filed)


# Built once: a statement constructed per delivery cost the writer thread its SQL
# compilation cache key each time (half of the writer's Python time at 500 KB + PDF,
# py-spy --gil); these are compiled once and only their parameters change.
_FILED_ALREADY = (select(Document.mailbox_id, Document.dedupe)
                  .where(tuple_(Document.mailbox_id, Document.dedupe).in_(bindparam("pairs", expanding=True))))
_INSERT_DOCUMENTS, _INSERT_AUDIT, _INSERT_BLOBS = insert(Document), insert(AuditEvent), insert(Blob)


def insert_documents(conn: Connection, sealed: SealedDocuments) -> tuple[list[tuple[int, str]], list[Change]]:
    """Insert the documents not filed yet (inside the caller's transaction); returns
    (mailbox id, document id) of those filed now, and their feed changes."""
    return insert_documents_together(conn, [sealed])[0]


def insert_documents_together(conn: Connection, batch: Sequence[SealedDocuments]
                              ) -> list[tuple[list[tuple[int, str]], list[Change]]]:
    """insert_documents for the deliveries of one writer batch, in a constant number of
    statements (three, not three per delivery); the same outcome as calling it for each
    in turn: a document already filed, or filed by an earlier one of the batch, is not
    filed again, and the audit events keep that order."""
    pairs = list({(r["mailbox_id"], r["dedupe"]) for sealed in batch for r in sealed.rows})
    seen: set[tuple[int, str]] = set()
    for start in range(0, len(pairs), 400):
        seen |= {tuple(r) for r in conn.execute(_FILED_ALREADY, {"pairs": pairs[start:start + 400]})}
    audit: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    blobs: dict[str, bytes] = {}
    out: list[tuple[list[tuple[int, str]], list[Change]]] = []
    when = dt.datetime.now(dt.timezone.utc)
    for sealed in batch:
        audit.extend({"mailbox_id": mid, "at": when, "actor": actor[:320], "action": "dossier.not_filed",
                      "detail": reason[:1024], "source": sealed.source[:64]} for mid, actor, reason in sealed.not_filed)
        filed: list[tuple[int, str]] = []
        for r in sealed.rows:
            k = (r["mailbox_id"], r["dedupe"])
            if k in seen:  # filed before, or by an earlier delivery of this batch
                continue
            seen.add(k)
            rows.append(r)
            if r["blob_id"] in sealed.blobs:  # the others are the message's own blob
                blobs[r["blob_id"]] = sealed.blobs[r["blob_id"]]
            audit.append({"mailbox_id": r["mailbox_id"], "at": r["filed_at"], "actor": r["filed_by"],
                          "action": "dossier.filed", "detail": f"document {r['id']}", "source": sealed.source[:64]})
            filed.append((r["mailbox_id"], r["id"]))
        out.append((filed, [Change("dossier.new", mid, "", 0) for mid, _ in filed]))
    if blobs:
        conn.execute(_INSERT_BLOBS, [{"id": b, "sealed": blobs[b]} for b in sorted(blobs)])
    if rows:
        conn.execute(_INSERT_DOCUMENTS, rows)
    if audit:
        conn.execute(_INSERT_AUDIT, audit)
    return out


class DocumentOps(Repository):
    engine: Any
    writer: "Writer"

    async def seal_documents(self, per_mailbox: Sequence[tuple["MailboxInfo", Sequence[NewDocument]]],
                             filed_by: str, source: str = "",
                             not_filed: Sequence[tuple["MailboxInfo", str]] = (),
                             message_blob: tuple[str, bytes] | None = None) -> SealedDocuments:
        """Seal each distinct content once, and each mailbox's rows with its own keys;
        `not_filed` (mailbox, reason) go to the audit log in the same transaction. With
        `message_blob` (blob id, content key of the message being delivered), documents
        with a locator point into it and no bytes are sealed twice."""
        out = SealedDocuments(source=source, not_filed=[(mb.id, filed_by, reason) for mb, reason in not_filed])
        now = dt.datetime.now(dt.timezone.utc)
        by_content: dict[str, tuple[str, bytes]] = {}  # sha256 -> (blob id, content key)
        for mb, docs in per_mailbox:
            aead = await self._data_key(mb.id, mb.ins)
            dedupe_key = await self._dedupe_key(mb.id, mb.ins)
            for doc in docs:
                digest = doc.sha256
                if doc.locator is not None and message_blob is not None:
                    blob_id, content_key = message_blob  # the message's own blob: nothing sealed twice
                else:
                    if digest not in by_content:
                        new_id = uuid.uuid4().hex
                        new_key, out.blobs[new_id] = await self.off_loop(len(doc.content), seal_blob, new_id,
                                                                         doc.content)
                        by_content[digest] = (new_id, new_key)
                    blob_id, content_key = by_content[digest]
                doc_id = uuid.uuid4().hex
                meta = json.dumps(dict(doc.meta), ensure_ascii=False, sort_keys=True).encode()
                out.rows.append({
                    "id": doc_id, "mailbox_id": mb.id,
                    "dedupe": hmac.new(dedupe_key, f"{doc.source_id}\0{digest}".encode(), hashlib.sha256).hexdigest(),
                    "blob_id": blob_id,
                    "key_wrapped": wrap_content_key(aead, mb.ins, blob_id, content_key),
                    "meta_sealed": seal(aead, meta, blob_aad(mb.ins, doc_id, "meta")),
                    "locator": doc.locator if message_blob is not None else None,
                    "size": len(doc.content), "filed_at": now, "filed_by": filed_by[:320]})
        return out

    async def file_documents(self, mailbox: "MailboxInfo", docs: Sequence[NewDocument], filed_by: str,
                             source: str = "", not_filed: Sequence[str] = ()) -> list[str]:
        """File documents outside a delivery (the patient's "Dossier médical" folder);
        returns the ids of those not filed before."""
        sealed = await self.seal_documents([(mailbox, docs)], filed_by, source,
                                           [(mailbox, reason) for reason in not_filed])

        def job(conn: Connection) -> tuple[list[str], list[Change]]:
            filed, changes = insert_documents(conn, sealed)
            return [doc_id for _, doc_id in filed], changes

        return await self.writer.submit(job) if sealed else []

    async def part_located(self, after: str = "", limit: int = 50) -> list[tuple[str, str, bytes]]:
        """Documents located in their message by part number only (filed before byte
        ranges, issue 15 item 4), after the id `after`, in id order: (id, locator,
        the decrypted message). At most `limit` messages in memory."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(Document.id, Document.locator, Document.blob_id, Document.key_wrapped, Blob.sealed,
                       Mailbox.id.label("mailbox_id"), Mailbox.ins)
                .join(Blob, Blob.id == Document.blob_id).join(Mailbox, Mailbox.id == Document.mailbox_id)
                .where(Document.locator.is_not(None), Document.locator.not_like("%|at:%"), Document.id > after)
                .order_by(Document.id).limit(limit))).all()
        out = []
        for r in rows:
            aead = await self._data_key(r.mailbox_id, r.ins)
            out.append((r.id, r.locator, open_blob(aead, r.ins, r.blob_id, r.key_wrapped, r.sealed)))
        return out

    async def relocate_document(self, doc_id: str, old: str, new: str) -> bool:
        """Replace a document's locator, only if it is still `old`."""
        def job(conn: Connection) -> tuple[bool, list[Change]]:
            done = conn.execute(update(Document).where(Document.id == doc_id, Document.locator == old)
                                .values(locator=new))
            return done.rowcount == 1, []

        return bool(await self.writer.submit(job))

    async def documents(self, mailbox: "MailboxInfo") -> list[StoredDocument]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(Document.id, Document.size, Document.filed_at, Document.filed_by, Document.meta_sealed,
                       Document.locator)
                .where(Document.mailbox_id == mailbox.id).order_by(Document.filed_at, Document.id))).all()
        aead = await self._data_key(mailbox.id, mailbox.ins)
        return [StoredDocument(r.id, r.size, utc(r.filed_at), r.filed_by,
                               json.loads(open_sealed(aead, r.meta_sealed, blob_aad(mailbox.ins, r.id, "meta"))),
                               r.locator)
                for r in rows]

    async def document(self, mailbox: "MailboxInfo", doc_id: str, actor: str,
                       source: str = "") -> tuple[StoredDocument, bytes]:
        """One document and its blob: its content, or (`locator` set) the message it
        lies in, which dossier_bridge.dossier.read_document resolves. The download is
        written to the audit log before anything is returned (DESIGN.md §4)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(Document.id, Document.size, Document.filed_at, Document.filed_by, Document.meta_sealed,
                       Document.blob_id, Document.key_wrapped, Document.locator, Blob.sealed)
                .join(Blob, Blob.id == Document.blob_id)
                .where(Document.mailbox_id == mailbox.id, Document.id == doc_id))).first()
        if row is None:
            raise NoSuchDocument(f"no document {doc_id} in the dossier of {mailbox.ins}")
        aead = await self._data_key(mailbox.id, mailbox.ins)
        meta = json.loads(open_sealed(aead, row.meta_sealed, blob_aad(mailbox.ins, row.id, "meta")))
        content = await self.off_loop(len(row.sealed), open_blob, aead, mailbox.ins, row.blob_id, row.key_wrapped,
                                      row.sealed)
        await self.audit(mailbox.id, actor, "dossier.download", f"document {doc_id}", source)
        return StoredDocument(row.id, row.size, utc(row.filed_at), row.filed_by, meta, row.locator), content

    async def delete_document(self, mailbox: "MailboxInfo", doc_id: str, actor: str, source: str = "") -> None:
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            blob_id = conn.execute(select(Document.blob_id).where(Document.mailbox_id == mailbox.id,
                                                                  Document.id == doc_id)).scalar()
            if blob_id is None:
                raise NoSuchDocument(f"no document {doc_id} in the dossier of {mailbox.ins}")
            conn.execute(delete(Document).where(Document.id == doc_id))
            delete_orphan_blobs(conn, {blob_id})
            conn.execute(insert(AuditEvent).values(mailbox_id=mailbox.id, at=when, actor=actor[:320],
                                                   action="dossier.delete", detail=f"document {doc_id}",
                                                   source=source[:64]))
            return None, []

        await self.writer.submit(job)
