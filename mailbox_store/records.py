"""Records the store hands out about mailboxes and their audit log: below store.py and
its repositories, which all build them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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
