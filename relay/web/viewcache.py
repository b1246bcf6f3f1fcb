"""The conversation page's view of a message (mailview.FullView: text, sanitised HTML,
attachment list) and its thread root, kept by the message's sealed blob id, so that
opening a conversation again neither decrypts, MIME-parses nor sanitises its messages
(issue 11 "Benchmark": those were most of the page's CPU, and the list page queued
behind them on 2 cores).

Implementation notes:
- The key is the sealed blob id, as relay/imap/fetchcache.py's DerivedCache: random,
  never reused, a message's bytes never change under it, so an entry is never stale
  and no change feed is needed. Copies share a blob: the view is kept without its UID
  and given the asker's UID on the way out.
- What a view holds depends on the attachment rules (which parts are files, refused or
  viewable): the cache is emptied when it is asked with other rules.
- Bounded in bytes (LRU). It holds texts like the decrypted messages a page holds in
  memory; never on disk, never logged. Used on the event loop only, except `__contains__`
  (a dict membership test, atomic under the GIL), which the store's reader thread calls
  to leave a known message sealed.
- A page served from it still audits its reads (relay/web/pages_mail.py).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

from relay.web.mailview import FullView

CACHE_BYTES = 32 * 1024 * 1024  # the views of every session together


class ViewCache:
    """FullView and thread root of messages by sealed blob id, least recently used out."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._max = max_bytes
        self._size = 0
        self._rules: Any = None
        self._data: OrderedDict[str, tuple[FullView, str | None, int]] = OrderedDict()

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size(self) -> int:
        return self._size

    def get(self, blob_id: str, uid: int, rules: Any) -> tuple[FullView, str | None] | None:
        """The view (with this UID) and thread root, or None when not kept under these rules."""
        self.use_rules(rules)
        got = self._data.get(blob_id)
        if got is None:
            return None
        self._data.move_to_end(blob_id)
        view, root, _ = got
        if view.summary.uid != uid:
            view = dataclasses.replace(view, summary=dataclasses.replace(view.summary, uid=uid))
        return view, root

    def put(self, blob_id: str, view: FullView, root: str | None, rules: Any) -> None:
        self.use_rules(rules)
        old = self._data.pop(blob_id, None)
        if old is not None:
            self._size -= old[2]
        cost = _cost(blob_id, view, root)
        if cost > self._max:
            return
        self._data[blob_id] = (view, root, cost)
        self._size += cost
        while self._size > self._max and self._data:
            _, gone = self._data.popitem(last=False)
            self._size -= gone[2]

    def use_rules(self, rules: Any) -> None:
        """Views made under other attachment rules are dropped."""
        if rules != self._rules:
            self._data.clear()
            self._size = 0
            self._rules = rules


def _cost(blob_id: str, view: FullView, root: str | None) -> int:
    """Bytes held, roughly: the texts (4 bytes a character at worst) and the records."""
    s = view.summary
    chars = (len(view.text or "") + len(view.html or "") + len(s.subject) + len(root or "")
             + sum(len(p.name) + len(p.address) for p in (s.sender, s.reply_to, *s.to) if p is not None)
             + sum(len(i) for i in (s.message_id or "", *s.in_reply_to, *s.references))
             + sum(len(a.filename) + len(a.part) + len(a.mime_type) for a in view.attachments))
    return len(blob_id) + 4 * chars + 600 + 200 * (len(view.attachments) + len(s.to))
