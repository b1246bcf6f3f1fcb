"""Tables of the store (SQLAlchemy 2 declarative). Nothing here is plaintext health
content: bodies live sealed in `blobs` (see crypto.py); sizes, dates and flags are not
secret and let IMAP answer without decrypting."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String,
                        UniqueConstraint, true)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# DESIGN.md §4 "Dossier": copying a message into this folder files its attachments
DOSSIER_FOLDER = "Dossier médical"

# Folders every mailbox gets, with their RFC 6154 special-use attribute.
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
    (DOSSIER_FOLDER, None),
)


def utc(when: dt.datetime) -> dt.datetime:
    """A stored time, zone-aware: SQLite drops the zone, and we always store UTC."""
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class Mailbox(Base):
    __tablename__ = "mailboxes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ins: Mapped[str] = mapped_column(String(15), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    notify_email: Mapped[str | None] = mapped_column(String(320))
    data_key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # argon2id hash of the one-time activation code of a pending mailbox
    activation_hash: Mapped[str | None] = mapped_column(String(255))
    # RFC 3501 §2.3.1.1: the highest UIDVALIDITY any folder of this mailbox ever had, so
    # that a folder deleted and re-created never gets an old one back
    last_uidvalidity: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    special_use: Mapped[str | None] = mapped_column(String(32))
    # RFC 3501 §2.3.1.1: UIDs strictly ascend within a folder and never repeat for the
    # same UIDVALIDITY; uidnext is only ever incremented, inside the writer transaction.
    uidvalidity: Mapped[int] = mapped_column(Integer)
    uidnext: Mapped[int] = mapped_column(Integer, default=1)
    # RFC 3501 §2.3.2 \Recent, Dovecot's semantics: UIDs from here on have been seen by no
    # session yet; the first session to select the folder read-write claims them
    first_recent_uid: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # RFC 7162 §3: the folder's HIGHESTMODSEQ, raised by every change to its messages
    # (modseq.py); it only grows, and a folder re-created gets a new UIDVALIDITY
    highestmodseq: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # RFC 7162 §3.2.5.2: expunged UIDs with a modseq up to this one were pruned
    # (expunged.py); a client that knows only an older modseq gets every missing UID
    expunge_horizon: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Subscription(Base):
    """A subscribed name (RFC 3501 §6.3.6): independent of the folders, it may name one
    that does not exist (any more): LSUB and LIST (SUBSCRIBED) still show it."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))


class Blob(Base):
    """A message's bytes, sealed once with a content key (crypto.py); shared by the
    message rows of all its recipients."""

    __tablename__ = "blobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, also in the AAD
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # nonce || AES-256-GCM(ciphertext+tag)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("folder_id", "uid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(Integer)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"))
    # the blob's content key, sealed with this mailbox's data key
    key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    flags: Mapped[str] = mapped_column(String(1024), default="")  # space-separated
    internal_date: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    size: Mapped[int] = mapped_column(Integer)  # RFC822.SIZE of the stored bytes
    # The conversation index (thread.py): HMAC, under a key derived from the mailbox's
    # data key, of the thread root's Message-ID; "" when the message names none, NULL
    # until the backfill of rows stored before migration 0011 reaches it.
    thread_key: Mapped[str | None] = mapped_column(String(64))
    # RFC 7162 §3: the folder's modseq at this message's last change (arrival, flags)
    modseq: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


Index("ix_messages_blob", Message.blob_id)
Index("ix_messages_thread", Message.thread_key)


class ExpungedUid(Base):
    """A UID expunged from a folder, with the modseq of its expunge: what QRESYNC's
    VANISHED (EARLIER) tells a client that resynchronises (RFC 7162 §3.2.5.2)."""

    __tablename__ = "expunged_uids"
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True)
    uid: Mapped[int] = mapped_column(Integer, primary_key=True)
    modseq: Mapped[int] = mapped_column(Integer)


class AuditEvent(Base):
    """Append-only trace of every access to a patient's data (DESIGN.md §4 "Durability
    and trace"): who, when, from where, what. Never the content itself."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(320))  # "patient", "guardian:<ins>", "admin:<user>", "mx"
    action: Mapped[str] = mapped_column(String(64))  # "login", "message.read", ...
    detail: Mapped[str] = mapped_column(String(1024), default="")  # folder, uids; never content
    source: Mapped[str] = mapped_column(String(64), default="")  # client address or "cli"


class Guardian(Base):
    """A legal representative who sees and answers a child's mailbox from their own
    login (DESIGN.md §4 "Minors and helpers")."""

    __tablename__ = "guardians"
    child_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    guardian_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True,
                                             index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Document(Base):
    """A document of the patient's dossier (DESIGN.md §4 "Dossier"). Its content is a
    sealed blob like a message body; its metadata (title, category, author: health
    content) is sealed with the mailbox's data key. `dedupe` is a keyed hash of the
    source message and the content, so a redelivered message files nothing twice
    without the database saying what either was."""

    __tablename__ = "dossier_documents"
    __table_args__ = (UniqueConstraint("mailbox_id", "dedupe"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random; the CLI's DOC_ID
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    dedupe: Mapped[str] = mapped_column(String(64))
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"), index=True)
    key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)  # the blob's content key, for this mailbox
    meta_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # JSON, sealed with the mailbox's data key
    # None: the blob is the document. Else the blob is the message it came in, and this
    # says where in it ("part:2", "part:2|xdm:IHE_XDM/SUBSET01/DOC0001.XML"): filing
    # at delivery writes no second copy of the bytes (dossier_bridge reads it back).
    locator: Mapped[str | None] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(Integer)
    filed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    filed_by: Mapped[str] = mapped_column(String(320))  # "mx", "patient", "guardian:<ins>"


class Correspondent(Base):
    """A professional who wrote to the patient (DESIGN.md §4 "Professional initiates"):
    the patient may write to them while the exchange is open; a [FIN] closes it, their
    next message re-opens it (policy/conversation.py decides; this is the memory)."""

    __tablename__ = "correspondents"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # normalised (lower case)
    state: Mapped[str] = mapped_column(String(8))  # "open" | "closed" (policy.conversation.Exchange)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ClosedMessage(Base):
    """Message-IDs of professional messages marked `X-MSS-MES: FIN`: replies refused."""

    __tablename__ = "closed_messages"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), primary_key=True)


class Pharmacy(Base):
    """Organisational mailboxes of pharmacies (officines) the patient may write to first
    (`mssante-relay pharmacy allow`)."""

    __tablename__ = "pharmacies"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class OutboundEntry(Base):
    """One recipient of a message in the outbound queue (DESIGN.md §2: patients' replies,
    DSNs are delivered locally, TEST acknowledgements, MDNs, notifications). The queue
    is the only source of truth (Postfix's law): a row exists until the recipient's
    server acknowledged it or it failed for good. The content is a sealed blob whose
    key is wrapped for `mailbox_id` (the sender, or the postmaster mailbox)."""

    __tablename__ = "outbound"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    envelope_id: Mapped[str] = mapped_column(String(32), index=True)  # the message, all its recipients
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"), index=True)
    key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(16))  # reply, autoreply, mdn, notification
    route: Mapped[str] = mapped_column(String(16))  # "mssante" (mutual TLS) or "smarthost"
    mail_from: Mapped[str] = mapped_column(String(320))  # "" is the null reverse-path
    rcpt: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255), index=True)
    size: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(String(1024), default="")
    # issue 14: the node attempting this entry, until when (queue_claim.py); NULL: free
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ReceiptRequest(Base):
    """A professional's read-receipt request (Disposition-Notification-To, RFC 8098),
    recorded by the MX at delivery: only these get an MDN, once (`sent_at`), whatever
    the patient does with IMAP flags or APPEND. Keyed by the message's blob, which its
    copies in other folders share."""

    __tablename__ = "receipt_requests"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    blob_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(320))  # where the MDN goes (normalised)
    message_id: Mapped[str | None] = mapped_column(String(998))  # Original-Message-ID
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ProAccess(Base):
    """A health professional the patient authorised or blocked (issue 18): "Autorisé(s)"
    and "Bloqué(s)". A block wins over an authorisation and keeps it: unblocking
    gives back what was there before."""

    __tablename__ = "pro_access"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    idnat: Mapped[str] = mapped_column(String(12), primary_key=True)  # IdNat_PS: "8" + RPPS
    name: Mapped[str] = mapped_column(String(200), default="")  # from the card certificate, when known
    allowed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    allowed_by: Mapped[str] = mapped_column(String(320), default="")  # "consent", "patient", "admin"...
    blocked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    first_access_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # told once


class HiddenDocument(Base):
    """A dossier document the patient hid: only its author and the attending doctor see it."""

    __tablename__ = "hidden_documents"
    document_id: Mapped[str] = mapped_column(ForeignKey("dossier_documents.id", ondelete="CASCADE"),
                                             primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    hidden_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ProSettings(Base):
    """The patient's attending doctor and emergency-access switch (default: on)."""

    __tablename__ = "pro_settings"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    attending_idnat: Mapped[str | None] = mapped_column(String(12))
    emergency_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Budget(Base):
    """A fixed-window counter shared by every node of one database (budgets.py, issue
    14): the TEST acknowledgements of one sender, the notifications of one mailbox."""

    __tablename__ = "budgets"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used: Mapped[int] = mapped_column(Integer)
