"""One `* STATUS` response (RFC 3501 §7.2.4, RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE):
what STATUS, LIST-STATUS and NOTIFY's STATUS events send (session.py, notify.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mailbox_store.folders import FolderInfo
from mailbox_store.store import MailboxInfo
from relay.imap import wire

if TYPE_CHECKING:
    from relay.imap.session import Session


async def status_line(s: "Session", owner: MailboxInfo, f: FolderInfo, client_name: str,
                       items: list[str]) -> bytes:
    values = []
    size = deleted = 0
    if "SIZE" in items or "DELETED" in items:
        snap = await s.server.store.snapshot(owner.id, f.name)
        size = sum(m.size for m in snap.messages)
        deleted = sum(1 for m in snap.messages if "\\Deleted" in m.flags)
    for item in items:
        value = ({"RECENT": f.recent, "MESSAGES": f.messages, "UIDNEXT": f.uidnext, "UIDVALIDITY": f.uidvalidity,
                  "UNSEEN": f.unseen, "SIZE": size, "DELETED": deleted,
                  "HIGHESTMODSEQ": f.highestmodseq}[item])
        values.append(b"%s %d" % (item.encode(), value))
    return b"* STATUS " + s.encode_name(client_name) + b" " + wire.plist(values)
