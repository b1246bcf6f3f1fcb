"""relay/web/counts.py: the Messagerie's message and unread counts, kept until a change
of their folder comes through the store's feed, a TTL passes, or the bound is hit."""
from __future__ import annotations

import datetime as dt

from mailbox_store.feed import Change, Feed, MessageMeta
from relay.web.counts import FolderCounts


def test_a_change_of_the_folder_forgets_its_counts() -> None:
    feed = Feed()
    counts = FolderCounts(feed, ttl=60)
    counts.put(1, "INBOX", 7, 100, 3, counts.epoch, now=0)
    counts.put(1, "Sent", 7, 5, 0, counts.epoch, now=0)
    counts.put(2, "INBOX", 9, 1, 1, counts.epoch, now=0)
    assert counts.get(1, "INBOX", now=1) == (7, 100, 3)
    feed.publish([Change("message.flags", 1, "INBOX", 4)])
    assert counts.get(1, "INBOX", now=1) is None
    assert counts.get(1, "Sent", now=1) == (7, 5, 0) and counts.get(2, "INBOX", now=1) == (9, 1, 1)
    feed.publish([Change("folder.renamed", 1, "Sent", 0)])
    assert counts.get(1, "Sent", now=1) is None and counts.get(2, "INBOX", now=1) == (9, 1, 1)
    counts.close()
    feed.publish([Change("message.new", 2, "INBOX", 2)])  # no longer listening
    assert counts.get(2, "INBOX", now=1) == (9, 1, 1)


def test_counts_read_across_a_change_are_not_kept() -> None:
    feed = Feed()
    counts = FolderCounts(feed, ttl=60)
    before = counts.epoch
    feed.publish([Change("message.new", 1, "INBOX", 101)])  # committed while the count ran
    counts.put(1, "INBOX", 7, 100, 3, before, now=0)
    assert counts.get(1, "INBOX", now=1) is None
    counts.put(1, "INBOX", 7, 101, 4, counts.epoch, now=0)
    assert counts.get(1, "INBOX", now=1) == (7, 101, 4)


def test_counts_expire_and_are_bounded() -> None:
    counts = FolderCounts(Feed(), ttl=10, max_entries=3)
    for i in range(5):
        counts.put(i, "INBOX", 1, i, 0, counts.epoch, now=0)
    assert [counts.get(i, "INBOX", now=1) for i in range(5)] == [None, None, (1, 2, 0), (1, 3, 0), (1, 4, 0)]
    assert counts.get(4, "INBOX", now=10) is None  # another process's writes show within the TTL


def _metas(*uids: int) -> list[MessageMeta]:
    when = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)
    return [MessageMeta(u, frozenset(), when, 100) for u in uids]


def test_the_first_page_is_kept_until_its_folder_changes() -> None:
    feed = Feed()
    counts = FolderCounts(feed, ttl=60)
    counts.put_first_page(1, "INBOX", 7, 50, _metas(3, 2, 1), counts.epoch, now=0)
    counts.put_first_page(1, "Sent", 7, 50, _metas(9), counts.epoch, now=0)
    assert counts.first_page(1, "INBOX", 50, now=1) == (7, tuple(_metas(3, 2, 1)))
    assert counts.first_page(1, "INBOX", 20, now=1) is None  # another page size: not this page
    feed.publish([Change("message.flags", 1, "INBOX", 2, flags=frozenset({"\\Seen"}))])
    assert counts.first_page(1, "INBOX", 50, now=1) is None  # the \Seen must show: read again
    assert counts.first_page(1, "Sent", 50, now=1) is not None
    feed.publish([Change("folder.deleted", 1, "Archive", 0)])
    assert counts.first_page(1, "Sent", 50, now=1) is None
    counts.put_first_page(2, "INBOX", 7, 50, _metas(1), counts.epoch, now=0)
    assert counts.first_page(2, "INBOX", 50, now=60) is None  # another process's writes: the TTL


def test_a_first_page_read_across_a_change_is_not_kept_and_pages_are_bounded() -> None:
    feed = Feed()
    counts = FolderCounts(feed, ttl=60, max_pages=2)
    before = counts.epoch
    feed.publish([Change("message.new", 1, "INBOX", 4)])
    counts.put_first_page(1, "INBOX", 7, 50, _metas(3, 2, 1), before, now=0)
    assert counts.first_page(1, "INBOX", 50, now=1) is None
    for mid in (1, 2, 3):
        counts.put_first_page(mid, "INBOX", 7, 50, _metas(mid), counts.epoch, now=0)
    assert [counts.first_page(m, "INBOX", 50, now=1) is None for m in (1, 2, 3)] == [True, False, False]
