"""The selected mailbox's messages worked through in bounded chunks, and the SEARCH
matching that SORT, THREAD and ESORT reuse (ordering.py)."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from relay.imap import search as searchmod
from relay.imap.selected import Selected
from relay.imap.types import MessageView, SearchKey

if TYPE_CHECKING:
    from relay.imap.session import Session

FETCH_CHUNK = 256  # at most this many messages...
FETCH_CHUNK_BYTES = 16 * 1024 * 1024  # ...and about this many bytes decrypted at once


async def matching_views(s: Session, key: SearchKey) -> list[MessageView]:
    """The views of the selected mailbox that match a search key, in sequence order:
    SEARCH's matching, which SORT, THREAD and ESORT reuse (ordering.py)."""
    sel = s.selected
    assert sel is not None
    # compiled once: sequence sets as sorted ranges, tested by bisect (search.py)
    search = searchmod.Search(key, sel.exists, sel.uids[-1] if sel.uids else 0)
    need = search.needs_content
    hits: list[MessageView] = []
    read = 0
    for chunk in chunks(sel, range(1, sel.exists + 1), need):
        views = [sel.view(seq) for seq in chunk]
        if need:
            raws = await s.server.store.fetch_raw_many(sel.owner.ins, sel.name, [v.uid for v in views])
            # expunged by another session, not yet announced: no match
            pairs = [(v, raws[v.uid]) for v in views if v.uid in raws]
            del raws
            read += len(pairs)
            # parsing and folding bodies is long work: a worker thread, never the loop
            hits += await s.server.offload(lambda pairs=pairs: [v for v, raw in pairs if search.matches(v, raw)])
        else:
            hits += [v for v in views if search.matches(v, None)]
            await asyncio.sleep(0)  # between chunks, other sessions' commands run
    if read:
        await s.server.audit_read(s, read)
    return hits


def chunks(sel: Selected, seqs: Sequence[int], need_content: bool) -> list[list[int]]:
    """FETCH and SEARCH work through the messages in chunks bounded in count and, when
    bodies are read, in decrypted bytes: FETCH 1:* BODY[] must not hold a mailbox in
    memory (nor SEARCH BODY, which read 256 messages at once whatever their size)."""
    out: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for seq in seqs:
        m = sel.meta[sel.uids[seq - 1]]
        if cur and (len(cur) >= FETCH_CHUNK or (need_content and size + m.size > FETCH_CHUNK_BYTES)):
            out.append(cur)
            cur, size = [], 0
        cur.append(seq)
        size += m.size
    if cur:
        out.append(cur)
    return out
