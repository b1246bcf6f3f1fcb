"""Records the store hands out about mailboxes, their folders and their audit log: below
store.py, its repositories and imapreads.py, which all build them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mailbox_store.feed import MessageMeta
from mailbox_store.models import utc
from policy.recipients import MailboxState


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    id: int
    ins: str
    state: MailboxState
    notify_email: str | None
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: dt.datetime
    actor: str
    action: str
    detail: str
    source: str


def mailbox_info(row: Any) -> MailboxInfo:
    """A MailboxInfo from a row holding the mailboxes table's columns."""
    return MailboxInfo(row.id, row.ins, MailboxState(row.state), row.notify_email, utc(row.created_at))


class FolderError(Exception):
    """A folder operation that cannot be done; `code` is the IMAP response code."""

    def __init__(self, message: str, code: str = "CANNOT"):
        # the message may quote a client's name, and goes into a tagged reply: no CR, LF
        # or other control character may reach the wire (RFC 9051 §4.3, resp-text)
        super().__init__("".join("?" if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in message))
        self.code = code


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    id: int = 0
    subscribed: bool = True
    first_recent_uid: int = 1  # RFC 3501 §2.3.2: UIDs from here on are \Recent for nobody yet
    highestmodseq: int = 0  # RFC 7162 STATUS HIGHESTMODSEQ
    recent: int = 0  # RFC 3501 STATUS RECENT: messages at or above first_recent_uid


@dataclass(frozen=True, slots=True)
class Snapshot:
    folder_id: int
    name: str
    uidvalidity: int
    uidnext: int
    messages: list[MessageMeta]
    first_recent_uid: int = 1  # RFC 3501 §2.3.2: UIDs from here on are \Recent for nobody yet
    highestmodseq: int = 0  # RFC 7162 HIGHESTMODSEQ
