"""The message and unread counts of the Messagerie list, kept between requests.

Counting the unread of a folder reads every row's flags (measured: 4.5 ms a list page
on 10,000 messages, a quarter of the page's cost), for two numbers that change only
when a message arrives, is expunged or changes flags. Those changes of this process
all come through the store's change feed (after commit): an entry is dropped at the
first one of its folder. Another process's writes (the CLI) are seen within `ttl`.
A count read while a change committed is not kept (`epoch`: any change since the read
began). Entries are bounded in number; the oldest go first.

The first page of each folder's list (its newest messages, what every visit to
"Messagerie" and every live update shows) is kept the same way: a change of the folder
drops it, so a list page read again only when something changed. Under
bench/web_load.py that is one trip to the store's reader threads fewer per list page,
whose wait behind the other pages' reads was most of the list's latency."""
from __future__ import annotations

import time
from collections import OrderedDict

from mailbox_store.feed import Change, Feed, MessageMeta

TTL = 10.0
MAX_ENTRIES = 20_000
MAX_PAGES = 1_000  # first pages kept (50 rows each: about 10 MB)


class FolderCounts:
    def __init__(self, feed: Feed, ttl: float = TTL, max_entries: int = MAX_ENTRIES, max_pages: int = MAX_PAGES):
        self._ttl = ttl
        self._max = max_entries
        self._max_pages = max_pages
        self._entries: OrderedDict[tuple[int, str], tuple[float, int, int, int]] = OrderedDict()
        # (mailbox, folder) -> (expiry, UIDVALIDITY, page size asked, newest messages)
        self._pages: OrderedDict[tuple[int, str], tuple[float, int, int, tuple[MessageMeta, ...]]] = OrderedDict()
        self.epoch = 0  # changes seen: a count read across one is not kept
        self._feed = feed
        feed.listen(self._on_change)

    def close(self) -> None:
        self._feed.unlisten(self._on_change)

    def _on_change(self, c: Change) -> None:
        if c.kind.startswith(("message.", "folder.")):
            self.epoch += 1
        if c.kind.startswith("message."):
            self._entries.pop((c.mailbox_id, c.folder), None)
            self._pages.pop((c.mailbox_id, c.folder), None)
        elif c.kind.startswith("folder."):  # created, renamed, deleted: forget the mailbox's
            for key in [k for k in self._entries if k[0] == c.mailbox_id]:
                del self._entries[key]
            for key in [k for k in self._pages if k[0] == c.mailbox_id]:
                del self._pages[key]

    def get(self, mailbox_id: int, folder: str, now: float | None = None) -> tuple[int, int, int] | None:
        """(UIDVALIDITY, total, unseen) when known and fresh, else None."""
        hit = self._entries.get((mailbox_id, folder))
        now = time.monotonic() if now is None else now
        if hit is None or hit[0] <= now:
            return None
        return hit[1], hit[2], hit[3]

    def put(self, mailbox_id: int, folder: str, uidvalidity: int, total: int, unseen: int, epoch: int,
            now: float | None = None) -> None:
        """Keep counts read from `epoch` on (the value of .epoch before the read)."""
        if epoch != self.epoch:
            return
        now = time.monotonic() if now is None else now
        self._entries[(mailbox_id, folder)] = (now + self._ttl, uidvalidity, total, unseen)
        self._entries.move_to_end((mailbox_id, folder))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def first_page(self, mailbox_id: int, folder: str, limit: int,
                   now: float | None = None) -> tuple[int, tuple[MessageMeta, ...]] | None:
        """(UIDVALIDITY, the newest `limit` messages, newest first) when known and fresh."""
        hit = self._pages.get((mailbox_id, folder))
        now = time.monotonic() if now is None else now
        if hit is None or hit[0] <= now or hit[2] != limit:
            return None
        return hit[1], hit[3]

    def put_first_page(self, mailbox_id: int, folder: str, uidvalidity: int, limit: int,
                       messages: list[MessageMeta], epoch: int, now: float | None = None) -> None:
        """Keep a first page read from `epoch` on (the value of .epoch before the read)."""
        if epoch != self.epoch:
            return
        now = time.monotonic() if now is None else now
        self._pages[(mailbox_id, folder)] = (now + self._ttl, uidvalidity, limit, tuple(messages))
        self._pages.move_to_end((mailbox_id, folder))
        while len(self._pages) > self._max_pages:
            self._pages.popitem(last=False)
