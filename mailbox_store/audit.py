"""Audit events as one group job (writer.py): the reads of every front append an event
each (DESIGN.md §4 "Durability and trace"), so under load a batch holds many of them,
inserted with one statement instead of a savepoint and an INSERT each."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert

from mailbox_store.feed import Change
from mailbox_store.models import AuditEvent
from mailbox_store.writer import GroupJob


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
        conn.execute(insert(AuditEvent), [j.row() for j in jobs])
        return [(None, []) for _ in jobs]
