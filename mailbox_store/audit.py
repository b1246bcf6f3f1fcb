"""Audit rows the store writes itself (DESIGN.md §4 "Durability and trace").

- Administrative actions (issue 16 §6): written in the same transaction as the change
  they record, so neither exists without the other. Never a secret in them: "password
  set", not the hash; "activation code issued", not the code.
- Reads (every front appends an event each): one group job (writer.py), so under load a
  batch holds many of them, inserted with one statement instead of a savepoint and an
  INSERT each.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from mailbox_store.feed import Change
from mailbox_store.models import AuditEvent
from mailbox_store.prepared import prepared_insert
from mailbox_store.writer import GroupJob


def creation_audit(mailbox_id: int, at: dt.datetime, state: str, password: bool, notify_email: bool,
                   activation_code: bool, actor: str = "admin", source: str = "cli") -> list[dict[str, Any]]:
    """`mailbox.create` with its state, then one row per thing the creation set."""
    rows = [("mailbox.create", f"state {state}")]
    if password:
        rows.append(("password", "set"))
    if notify_email:
        rows.append(("notify_email", "set"))
    if activation_code:
        rows.append(("activation_code.issued", "one-time code, only its hash kept"))
    return [{"mailbox_id": mailbox_id, "at": at, "actor": actor, "action": action, "detail": detail,
             "source": source} for action, detail in rows]


# every audited read joins one of these (auditqueue.py): on the DBAPI cursor (prepared.py)
_INSERT = prepared_insert(AuditEvent, ("mailbox_id", "at", "actor", "action", "detail", "source"))


@dataclass
class AuditJob(GroupJob):
    mailbox_id: int
    at: dt.datetime
    actor: str
    action: str
    detail: str
    source: str

    def row(self) -> dict[str, Any]:
        return {"mailbox_id": self.mailbox_id, "at": self.at, "actor": self.actor[:320], "action": self.action[:64],
                "detail": self.detail[:1024], "source": self.source[:64]}

    @classmethod
    def apply_group(cls, conn: Connection, jobs: list["AuditJob"]) -> list[tuple[Any, list[Change]]]:
        _INSERT.execute(conn, [j.row() for j in jobs])
        return [(None, []) for _ in jobs]
