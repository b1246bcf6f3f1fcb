"""\\Recent on SELECT and EXAMINE (RFC 3501 §2.3.2, §6.3.1-2), with Dovecot's semantics:
SELECT claims for this session every message no session has seen yet (the store moves
the folder's mark, mailbox_store/recent.py); EXAMINE shows the same messages as recent
but claims none, so that a later SELECT still gets them. New messages announced while
the folder is selected are claimed in Selected.updates()."""
from __future__ import annotations

from mailbox_store.messages import Snapshot
from mailbox_store.store import Store
from relay.imap.selected import Selected


async def on_select(store: Store, sel: Selected, snap: Snapshot, rev2: bool) -> None:
    sel.show_recent = not rev2  # RFC 9051 §2.3.2: IMAP4rev2 has no \\Recent
    if sel.readonly:
        sel.recent = {u for u in sel.uids if u >= snap.first_recent_uid}
        return
    # only the UIDs the snapshot holds: one delivered since comes through the feed
    await sel.claim_recent(store, sel.uids, snap.uidnext)
