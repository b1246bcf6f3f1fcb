"""mailbox_store/procfeed.py on real Unix sockets: the change feed between the IMAP
processes of one daemon (imap.processes)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from mailbox_store import procfeed
from mailbox_store.feed import Change, Feed
from mailbox_store.procfeed import CommitSender, FeedFollower, FeedHub


def change(uid: int, kind: str = "message.new", modseq: int = 0) -> Change:
    return Change(kind, 7, "INBOX", uid, modseq=modseq or uid)


class Heard:
    """What one process's feed publishes."""

    def __init__(self, feed: Feed):
        self.changes: list[Change] = []
        feed.listen(self.changes.append)

    async def until(self, n: int) -> list[Change]:
        for _ in range(200):
            if len(self.changes) >= n:
                return self.changes
            await asyncio.sleep(0.01)
        raise AssertionError(f"heard {len(self.changes)} of {n}")


async def wired(workers: int = 2) -> tuple[FeedHub, Feed, socket.socket, list[tuple[FeedFollower, Feed]], list[bool]]:
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon_feed = Feed()
    hub = FeedHub(daemon_feed, "daemon", rx)
    hub.start()
    followers = []
    lost: list[bool] = []
    for i in range(workers):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        await hub.add(ours)
        feed = Feed()
        follower = FeedFollower(feed, f"worker-{i}", lambda: lost.append(True))
        await follower.start(theirs)
        followers.append((follower, feed))
    return hub, daemon_feed, tx, followers, lost


async def test_every_process_hears_the_others_in_commit_order_and_not_itself() -> None:
    hub, daemon_feed, tx, followers, _ = await wired()
    daemon_heard = Heard(daemon_feed)
    heard = [Heard(feed) for _, feed in followers]
    senders = {name: CommitSender(socket.socket(fileno=socket.dup(tx.fileno())), name)
               for name in ("daemon", "worker-0", "worker-1")}
    # commits of three processes, interleaved as the shared write lock would order them
    order = [("worker-0", 1), ("daemon", 2), ("worker-1", 3), ("worker-0", 4), ("worker-1", 5), ("daemon", 6)]
    for name, uid in order:
        await asyncio.to_thread(senders[name], [change(uid)])
    w0 = await heard[0].until(4)
    w1 = await heard[1].until(4)
    d = await daemon_heard.until(4)
    assert [c.uid for c in w0] == [2, 3, 5, 6]  # not its own 1 and 4
    assert [c.uid for c in w1] == [1, 2, 4, 6]
    assert [c.uid for c in d] == [1, 3, 4, 5]
    assert all(c.remote and c.meta is None and c.modseq == c.uid for c in w0 + w1 + d)
    await asyncio.sleep(0.05)
    assert len(w0) == 4 and len(w1) == 4 and len(d) == 4  # nothing twice
    for f, _ in followers:
        await f.stop()
    hub.close()
    for s in senders.values():
        s.close()


async def test_a_long_commit_goes_in_several_payloads_and_only_forwarded_kinds() -> None:
    hub, daemon_feed, tx, _followers, _ = await wired(workers=0)
    heard = Heard(daemon_feed)
    sender = CommitSender(tx, "worker-0")
    many = [change(uid) for uid in range(1, 2001)] + [Change("audit.read", 7, "INBOX", 0)]
    await asyncio.to_thread(sender, many)
    got = await heard.until(2000)
    assert [c.uid for c in got] == list(range(1, 2001))
    await asyncio.sleep(0.05)
    assert len(got) == 2000  # the audit row is no change for the others
    hub.close()


async def test_garbage_on_the_shared_socket_is_skipped() -> None:
    hub, daemon_feed, tx, followers, _ = await wired(workers=1)
    heard = Heard(daemon_feed)
    tx.send(b"\xff not json")
    tx.send(b'{"n": "worker-0", "c": [["message.new", "seven", "INBOX", 1, 1]]}')
    CommitSender(tx, "worker-0")([change(9)])
    got = await heard.until(1)
    assert [c.uid for c in got] == [9]
    await followers[0][0].stop()
    hub.close()


async def test_a_worker_that_does_not_read_is_cut_off_and_a_lost_daemon_is_noticed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hub, _daemon_feed, tx, followers, lost = await wired(workers=1)
    monkeypatch.setattr(procfeed, "MAX_BUFFERED", -1)  # any byte waiting is too many
    CommitSender(tx, "daemon")([change(1)])
    for _ in range(200):
        if lost:
            break
        await asyncio.sleep(0.01)
    assert lost == [True]  # the worker saw its link close: it stops (imapworker.py)
    await followers[0][0].stop()
    hub.close()
