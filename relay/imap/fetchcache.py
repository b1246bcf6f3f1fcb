"""FETCH ENVELOPE, BODYSTRUCTURE, BODY and the header items (issue 12 §3): what they
answer is derived from a message's bytes alone, so it is rendered once and kept (the
header items as the header block they are cut from), and a client that lists
its INBOX again (FETCH 1:* (FLAGS ENVELOPE), the first thing every client does) gets it
without one decryption or MIME parse.

Implementation notes:
- The key is the message's sealed blob id (random, never reused, shared by copies of
  the same bytes; mailbox_store.messages.blob_ids), as for SORT's keys (sortkeys.py): a
  message never changes under its blob, so an entry is never stale, and no change feed
  is needed to keep it right, whatever process wrote the message. A deleted folder's id
  reused by SQLite cannot meet old entries.
- Bounded in bytes (LRU). It holds subjects, addresses and header blocks, like the
  decrypted messages a FETCH holds in memory; it never goes to disk or logs. Used only
  on the event loop.
- Reading a cached envelope is still a read of the message: the caller audits it.
"""
from __future__ import annotations

from collections import OrderedDict

from relay.imap.fetch import HEADER, from_header
from relay.imap.types import FetchAtt

CACHE_BYTES = 64 * 1024 * 1024  # rendered items of every session together
DERIVED = (b"ENVELOPE", b"BODYSTRUCTURE", b"BODY", HEADER)  # the items a cache entry may hold


def derived_name(att: FetchAtt) -> bytes | None:
    """The cacheable item an attribute asks for, else None (other sections, binary,
    RFC822: those are the bytes themselves). The header items (RFC822.HEADER,
    BODY[HEADER], BODY[HEADER.FIELDS (...)]) all come from the header block, kept as
    HEADER: imaptest's FETCH asks them of up to 100 messages, and each cost the whole
    message's decryption and parse (issue 12 §3)."""
    if att.name in ("ENVELOPE", "BODYSTRUCTURE") or (att.name == "BODY" and att.section is None):
        return att.name.encode("ascii")
    if from_header(att):
        return HEADER
    return None


class DerivedCache:
    """Rendered ENVELOPE / BODYSTRUCTURE / BODY and header blocks of messages by blob id."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._max = max_bytes
        self._size = 0
        self._data: OrderedDict[str, dict[bytes, bytes]] = OrderedDict()

    def get(self, blob_id: str, names: frozenset[bytes]) -> dict[bytes, bytes] | None:
        """The items named, when all of them are cached."""
        got = self._data.get(blob_id)
        if got is None or not names <= got.keys():
            return None
        self._data.move_to_end(blob_id)
        return got

    def put(self, blob_id: str, items: dict[bytes, bytes]) -> None:
        old = self._data.pop(blob_id, None)
        if old is not None:
            self._size -= _cost(blob_id, old)
            items = {**old, **items}
        self._data[blob_id] = items
        self._size += _cost(blob_id, items)
        while self._size > self._max and self._data:
            key, gone = self._data.popitem(last=False)
            self._size -= _cost(key, gone)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size(self) -> int:
        return self._size


def _cost(key: str, items: dict[bytes, bytes]) -> int:
    return len(key) + sum(len(v) + 16 for v in items.values()) + 200  # dict and entry overhead
