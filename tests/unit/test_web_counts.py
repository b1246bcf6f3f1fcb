"""relay/web/counts.py: the Messagerie's message and unread counts, kept until a change
of their folder comes through the store's feed, a TTL passes, or the bound is hit."""
from __future__ import annotations

from mailbox_store.feed import Change, Feed
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
