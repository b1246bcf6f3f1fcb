"""The Messagerie list's rows, rendered once and kept as HTML between requests.

Rendering the list's 50 rows (escaping, the French date in Paris time) was the largest
cost of the event loop under bench/web_load.py (py-spy: 29 % of the loop's time, more
than any page's database reads). A row is a function of the message's summary (fixed
for a UID under one UIDVALIDITY, mailview.SummaryCache), its folder and whether it is
unread: that is the key, so a message read or marked unread since simply takes
another entry, and nothing needs to be dropped on a change. Bounded in number, least
recently used out."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

CAPACITY = 20_000

# (mailbox id, folder URL key, UIDVALIDITY, UID, unread)
RowKey = tuple[int, str, int, int, bool]


class RowCache:
    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self._items: OrderedDict[RowKey, Markup] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def html(self, key: RowKey, make: Callable[[], Any], render: Callable[[Any], Markup]) -> Markup:
        """The row's HTML: kept, or `render(make())` kept from now on."""
        got = self._items.get(key)
        if got is not None:
            self._items.move_to_end(key)
            return got
        got = Markup(render(make()))
        self._items[key] = got
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return got
