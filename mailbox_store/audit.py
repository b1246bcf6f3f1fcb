"""Audit rows of administrative actions the store performs itself (issue 16 §6).

A mailbox's audit log is the patient's record of who did what to their data; an
administrative action is written in the same transaction as the change it records,
so neither exists without the other. Never a secret in it: "password set", not the
hash; "activation code issued", not the code.
"""
from __future__ import annotations

import datetime as dt
from typing import Any


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
