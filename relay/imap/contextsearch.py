"""CONTEXT=SEARCH (RFC 5267 §4): SEARCH RETURN (UPDATE) keeps a search alive and tells
its changes as ESEARCH ADDTO / REMOVEFROM; CANCELUPDATE ends it; RETURN (PARTIAL m:n)
returns a window of the results (RFC 5267 §4.4, negative ranges as RFC 9394 §3.1).

Implementation notes:
- A live search belongs to the selected view (Selected.searches): it ends with the
  view (CLOSE, UNSELECT, another SELECT), as RFC 5267 §4.2 says. At most
  MAX_UPDATES per view; one more is refused NO [LIMIT].
- Its results are kept as UIDs. The view records the UIDs whose flags it changed or
  that it announced (Selected.touched, only while a search is live): after each
  command and in IDLE only those are matched again, the content keys (BODY, TEXT,
  headers) on their decrypted bytes in a worker thread, never the whole folder.
- An expunged result is told with REMOVEFROM before its EXPUNGE, with the sequence
  number it had (Dovecot does the same); ADDTO after EXISTS. The position is 0: SEARCH
  results are in ascending order, the client places them (RFC 5267 §4.3).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailbox_store.store import Store
from relay.imap import search as searchmod
from relay.imap.parser import Parser
from relay.imap.sequence import compress
from relay.imap.types import SearchKey

if TYPE_CHECKING:
    from relay.imap.selected import Selected

# SEARCH RETURN: RFC 4731 §3 and RFC 5267 §4 UPDATE (PARTIAL too: Parser.search_return_opts(partial=True))
RETURN_OPTS = frozenset({"MIN", "MAX", "ALL", "COUNT", "UPDATE"})
MAX_UPDATES = 8  # live searches per selected view
CONTENT_CHUNK = 256  # messages decrypted at once when a content key is matched again


@dataclass
class LiveSearch:
    tag: str
    uid: bool  # UID SEARCH: results told as UIDs, else as sequence numbers
    key: SearchKey
    hits: set[int] = field(default_factory=set)  # UIDs matching, as last told
    on_read: Callable[[int], Awaitable[None]] | None = None  # messages decrypted to match again (the audit log)


def partial_part(hits: list[int], window: tuple[int, int]) -> bytes:
    """PARTIAL (low:high set-or-NIL): the results at positions low..high (1-based), or
    counted from the last with negative positions (RFC 9394 §3.1)."""
    low, high = window
    if low > 0:
        chosen = hits[low - 1:high]
        shown = b"%d:%d" % (low, high)
    else:
        n = len(hits)
        start, stop = max(n + high, 0), max(n + low + 1, 0)  # -1 is the last result
        chosen = hits[start:stop]
        shown = b"%d:%d" % (high, low)
    return b"PARTIAL (" + shown + b" " + (compress(chosen).encode() if chosen else b"NIL") + b")"


def start(sel: "Selected", tag: str, uid: bool, key: SearchKey, hit_uids: Iterable[int],
          on_read: Callable[[int], Awaitable[None]] | None = None) -> bool:
    """Keep this search alive on the view; False when the view holds MAX_UPDATES already."""
    if len(sel.searches) >= MAX_UPDATES:
        return False
    sel.searches = [s for s in sel.searches if s.tag != tag] + [LiveSearch(tag, uid, key, set(hit_uids), on_read)]
    return True


def cancel(sel: "Selected", tags: list[str]) -> list[str]:
    """End the live searches of these tags; returns the tags that named none."""
    known = {s.tag for s in sel.searches}
    sel.searches = [s for s in sel.searches if s.tag not in tags]
    if not sel.searches:
        sel.touched.clear()
    return [t for t in tags if t not in known]


def _line(live: LiveSearch, sel: "Selected", word: bytes, uids: list[int]) -> bytes:
    numbers = sorted(uids) if live.uid else sorted(n for n in (sel.seq_of(u) for u in uids) if n is not None)
    return (b'* ESEARCH (TAG "' + live.tag.encode() + b'")' + (b" UID " if live.uid else b" ") + word +
            b" (0 " + compress(numbers).encode() + b")")


def removed(sel: "Selected", gone: Iterable[int]) -> list[bytes]:
    """REMOVEFROM for results about to be announced expunged: before their EXPUNGE,
    while their sequence numbers still hold."""
    if not sel.searches:
        return []
    gone = set(gone)
    out: list[bytes] = []
    for live in sel.searches:
        lost = [u for u in live.hits if u in gone and sel.seq_of(u) is not None]
        if lost:
            out.append(_line(live, sel, b"REMOVEFROM", lost))
            live.hits.difference_update(lost)
    return out


async def refresh(sel: "Selected", store: Store) -> list[bytes]:
    """ADDTO / REMOVEFROM for the messages whose flags changed or that arrived since the
    last call (Selected.touched), matched again against every live search."""
    if not sel.searches or not sel.touched:
        return []
    touched = sorted(u for u in sel.touched if sel.seq_of(u) is not None)
    sel.touched.clear()
    if not touched:
        return []
    largest_uid = sel.uids[-1] if sel.uids else 0
    out: list[bytes] = []
    for live in list(sel.searches):
        search = searchmod.Search(live.key, sel.exists, largest_uid)
        views = [sel.view(seq) for seq in (sel.seq_of(u) for u in touched) if seq is not None]
        if search.needs_content:
            matched: set[int] = set()
            for i in range(0, len(views), CONTENT_CHUNK):
                chunk = views[i:i + CONTENT_CHUNK]
                raws = await store.fetch_raw_many(sel.owner.ins, sel.name, [v.uid for v in chunk])
                pairs = [(v, raws[v.uid]) for v in chunk if v.uid in raws]
                del raws
                if live.on_read is not None and pairs:
                    await live.on_read(len(pairs))
                matched |= await asyncio.to_thread(
                    lambda pairs=pairs: {v.uid for v, raw in pairs if search.matches(v, raw)})  # type: ignore[misc]
        else:
            matched = {v.uid for v in views if search.matches(v, None)}
        checked = {v.uid for v in views}
        lost = [u for u in checked if u in live.hits and u not in matched]
        won = [u for u in matched if u not in live.hits]
        if lost:
            out.append(_line(live, sel, b"REMOVEFROM", lost))
            live.hits.difference_update(lost)
        if won:
            out.append(_line(live, sel, b"ADDTO", won))
            live.hits.update(won)
    return out


def parse_cancel(p: Parser) -> list[str]:
    """RFC 5267 §4.3.5: CANCELUPDATE 1*(SP tag-string)."""
    tags: list[str] = []
    while not p.at_end():
        p.sp()
        tags.append(p.string().decode("utf-8", "replace"))
    if not tags:
        raise p.error("CANCELUPDATE sans etiquette / CANCELUPDATE needs a tag")
    return tags
