"""The SORT and THREAD commands (RFC 5256), with ESORT's RETURN options (RFC 5267)
and SORT=DISPLAY's keys (RFC 5957).

Implementation notes:
- The messages are first searched exactly as SEARCH does (search.py, in chunks; the
  content-bound keys in a worker thread), then their sort keys are read from the
  server's SortCache (sortkeys.py): only messages never sorted before are decrypted,
  in chunks bounded like FETCH's, their headers parsed in a worker thread.
- Sorting and threading are pure (sort.py, thread.py); for big folders they run in a
  worker thread too, never on the event loop.
- The view's sequence numbers do not move during the command: no EXPUNGE is sent
  after SORT or THREAD (RFC 3501 §7.4.1), as for SEARCH.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from relay.imap import sort as sortmod
from relay.imap import thread as threadmod
from relay.imap.parser import BadCharset, Parser
from relay.imap.matching import chunks as _chunks
from relay.imap.matching import matching_views
from relay.imap.replies import Reply, bad, ok
from relay.imap.sortkeys import SortCache, SortFields, extract
from relay.imap.types import MessageView

if TYPE_CHECKING:
    from relay.imap.session import Session

CHARSETS = ("US-ASCII", "UTF-8")
OFFLOAD_FROM = 2000  # messages from which sorting/threading runs in a worker thread


def cache_of(s: Session) -> SortCache:
    cache: SortCache = s.server.sort_cache
    return cache


def _charset(p: Parser) -> None:
    charset = p.astring().upper()
    if charset not in CHARSETS:  # RFC 5256 §3: NO [BADCHARSET] like SEARCH
        raise BadCharset("[BADCHARSET (US-ASCII UTF-8)] jeu de caracteres non pris en charge / "
                         "unsupported charset", p.tag_value)


async def _with_keys(s: Session, views: list[MessageView]) -> list[tuple[MessageView, SortFields]]:
    """Each view with its sort keys: from the cache, else read and extracted once."""
    sel = s.selected
    assert sel is not None
    cache = cache_of(s)
    blobs = await s.server.store.blob_ids(sel.folder_id, [v.uid for v in views])
    known: dict[int, SortFields] = {}
    missing: list[int] = []
    for v in views:
        if v.uid not in blobs:
            continue  # expunged by another session meanwhile (not announced yet)
        got = cache.get(blobs[v.uid])
        if got is None:
            missing.append(v.seq)
        else:
            known[v.uid] = got
    read = 0
    for chunk in _chunks(sel, missing, True):
        uids = [sel.uids[i - 1] for i in chunk]
        raws = await s.server.store.fetch_raw_many(sel.owner.ins, sel.name, uids)
        read += len(raws)
        items = list(raws.items())
        del raws
        for uid, fields in await s.server.offload(lambda items=items: [(u, extract(r)) for u, r in items]):
            cache.put(blobs[uid], fields)
            known[uid] = fields
    if read:
        await s.server.audit_read(s, read)
    # expunged by another session meanwhile (not announced yet): no keys, left out
    return [(v, known[v.uid]) for v in views if v.uid in known]


def _ordered_set(numbers: Sequence[int]) -> bytes:
    """A sequence set in the given order (RFC 5267 §4.2: ALL keeps the sort order);
    only ascending runs collapse into n:m."""
    parts: list[bytes] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(b"%d" % numbers[i] if i == j else b"%d:%d" % (numbers[i], numbers[j]))
        i = j + 1
    return b",".join(parts)


async def cmd_sort(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    returns = p.search_return_opts()  # RFC 5267 ESORT; None when absent
    if returns is not None:
        p.sp()
    try:
        criteria = sortmod.parse_criteria(p.atom_list())
    except ValueError as e:
        return bad(f"critere de tri invalide / invalid sort criteria: {e}")
    p.sp()
    _charset(p)
    p.sp()
    _none, key = p.search_program(charset_allowed=False)
    p.end()
    pairs = await _with_keys(s, await matching_views(s, key))
    if len(pairs) >= OFFLOAD_FROM:
        ordered = await s.server.offload(lambda: sortmod.sort(pairs, criteria))
    else:
        ordered = sortmod.sort(pairs, criteria)
    numbers = [v.uid if uid else v.seq for v in ordered]
    if returns is None:
        await s.send(b"* SORT" + b"".join(b" %d" % n for n in numbers))
    else:  # RFC 5267 §4.2: ESEARCH, MIN/MAX the first/last in sort order
        parts = [b'(TAG "' + tag.encode() + b'")'] + ([b"UID"] if uid else [])
        if "MIN" in returns.opts and numbers:
            parts.append(b"MIN %d" % numbers[0])
        if "MAX" in returns.opts and numbers:
            parts.append(b"MAX %d" % numbers[-1])
        if "ALL" in returns.opts and numbers:
            parts.append(b"ALL " + _ordered_set(numbers))
        if "COUNT" in returns.opts:
            parts.append(b"COUNT %d" % len(numbers))
        await s.send(b"* ESEARCH " + b" ".join(parts))
    return ok("SORT done")


async def cmd_thread(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    algorithm = p.atom().upper()
    if algorithm not in threadmod.ALGORITHMS:
        return bad("algorithme THREAD inconnu / unknown THREAD algorithm")
    p.sp()
    _charset(p)
    p.sp()
    _none, key = p.search_program(charset_allowed=False)
    p.end()
    pairs = await _with_keys(s, await matching_views(s, key))
    build = threadmod.references if algorithm == "REFERENCES" else threadmod.ordered_subject

    def work() -> bytes:
        return threadmod.render(build(pairs), uid)

    rendered = await s.server.offload(work) if len(pairs) >= OFFLOAD_FROM else work()
    await s.send(b"* THREAD" + (b" " + rendered if rendered else b""))
    return ok("THREAD done")
