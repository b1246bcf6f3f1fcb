"""idlefan.FolderFan: a change reaches only the sessions showing its folder (issue 12:
a delivery to 500 mailboxes ran 500 x 10,000 session callbacks before)."""
from __future__ import annotations

import datetime as dt

from mailbox_store.feed import Change, Feed, MessageMeta
from relay.imap.idlefan import FolderFan


def _new(mailbox_id: int, folder: str, uid: int) -> Change:
    meta = MessageMeta(uid, frozenset(), dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc), 10, 2)
    return Change("message.new", mailbox_id, folder, uid, meta=meta, modseq=2)


def test_changes_reach_only_the_listeners_of_their_folder() -> None:
    feed = Feed()
    fan = FolderFan(feed)
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    a, b, c = (lambda ch, k=k: got[k].append(ch.uid) for k in "abc")  # type: ignore[misc]
    fan.move(a, None, (1, "INBOX"))
    fan.move(b, None, (1, "Sent"))
    fan.move(c, None, (2, "INBOX"))
    feed.publish([_new(1, "INBOX", 7), _new(2, "INBOX", 8), _new(3, "INBOX", 9)])
    assert got == {"a": [7], "b": [], "c": [8]}
    # a session selecting another folder moves; one deselecting leaves
    fan.move(a, (1, "INBOX"), (1, "Sent"))
    fan.move(c, (2, "INBOX"), None)
    feed.publish([_new(1, "INBOX", 10), _new(1, "Sent", 11), _new(2, "INBOX", 12)])
    assert got == {"a": [7, 11], "b": [11], "c": [8]}
    assert fan.listeners((1, "Sent")) == 2 and fan.listeners((1, "INBOX")) == 0
    fan.stop()
    feed.publish([_new(1, "Sent", 13)])
    assert got["a"] == [7, 11]


def test_a_failing_listener_does_not_keep_the_others_asleep() -> None:
    feed = Feed()
    fan = FolderFan(feed)
    got: list[int] = []

    def broken(change: Change) -> None:
        raise RuntimeError("bug")

    fan.move(broken, None, (1, "INBOX"))
    fan.move(lambda ch: got.append(ch.uid), None, (1, "INBOX"))
    feed.publish([_new(1, "INBOX", 5)])
    assert got == [5]
