"""One feed listener for all the IMAP sessions of the process, indexed by the folder
each session shows (issue 12: 10,000 IDLE sessions woken by one delivery).

Implementation notes:
- Before this, every logged-in session listened to the whole feed: a delivery to 500
  mailboxes (one change each) ran 500 x 10,000 callbacks, seconds of event loop before
  the first session was even woken. Here a change goes only to the sessions whose
  selected folder (or folder being selected) it concerns: one dict lookup per change.
- A session registers under (owner mailbox id, folder name) when it selects a folder
  (and before its SELECT snapshot, so that nothing published meanwhile is lost) and
  leaves when it deselects or closes. Callbacks run at publish time and must stay
  cheap and free of I/O (selected.py queues the change and sets the session's wake).
"""
from __future__ import annotations

from collections.abc import Callable

import structlog

from mailbox_store.feed import Change, Feed

log = structlog.get_logger("relay.imap.idlefan")

FolderKey = tuple[int, str]  # (owner mailbox id, folder name)
Listener = Callable[[Change], None]


class FolderFan:
    def __init__(self, feed: Feed):
        self._feed = feed
        self._by_folder: dict[FolderKey, set[Listener]] = {}
        self._by_mailbox: dict[int, set[Listener]] = {}  # NOTIFY (notify.py): every folder of a mailbox
        feed.listen(self._on_change)

    def stop(self) -> None:
        self._feed.unlisten(self._on_change)

    def move(self, listener: Listener, old: FolderKey | None, new: FolderKey | None) -> None:
        """Move listener from the sessions of folder old to those of folder new (None: none)."""
        if old == new:
            return
        if old is not None:
            subs = self._by_folder.get(old)
            if subs is not None:
                subs.discard(listener)
                if not subs:
                    del self._by_folder[old]
        if new is not None:
            self._by_folder.setdefault(new, set()).add(listener)

    def move_mailbox(self, listener: Listener, old: int | None, new: int | None) -> None:
        """The same for all the folders of a mailbox (NOTIFY, notify.py)."""
        if old == new:
            return
        if old is not None:
            subs = self._by_mailbox.get(old)
            if subs is not None:
                subs.discard(listener)
                if not subs:
                    del self._by_mailbox[old]
        if new is not None:
            self._by_mailbox.setdefault(new, set()).add(listener)

    def listeners(self, key: FolderKey) -> int:
        return len(self._by_folder.get(key, ()))

    def _on_change(self, change: Change) -> None:
        subs = self._by_folder.get((change.mailbox_id, change.folder))
        if self._by_mailbox:
            whole = self._by_mailbox.get(change.mailbox_id)
            if whole:
                subs = (subs or set()) | whole
        if not subs:
            return
        for listener in tuple(subs):
            try:
                listener(change)
            except Exception as e:  # one session's bug must not keep the others asleep
                log.error("imap.fan_listener_failed", error=type(e).__name__)
