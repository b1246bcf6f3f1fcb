"""relay/imap/selected.py: a session's view stays what the client was told, whatever
other sessions and the MX do (hypothesis over random interleavings)."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbox_store.feed import Change, MessageMeta
from mailbox_store.messages import Snapshot
from mailbox_store.store import MailboxInfo
from policy.recipients import MailboxState
from relay.imap.selected import Selected

OWNER = MailboxInfo(1, "279035121518989", MailboxState.ACTIVE, None, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
WHEN = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)


class NoStore:
    """Changes carry their metadata: the view must never need to ask the store for it.
    Only the \\Recent claim of new messages (a write, mailbox_store/recent.py) goes there:
    this store gives the session every message it claims."""

    async def claim_recent(self, folder_id: int, below_uid: int, uidvalidity: int = 0) -> int:
        return 1

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the store was asked ({name})")


def meta(uid: int, flags: frozenset[str] = frozenset()) -> MessageMeta:
    return MessageMeta(uid, flags, WHEN, 100 + uid)


ops = st.lists(st.one_of(
    st.tuples(st.just("new"), st.integers(1, 3)),
    st.tuples(st.just("expunge"), st.integers(0, 50)),
    st.tuples(st.just("flag"), st.integers(0, 50)),
    st.tuples(st.just("sync"), st.booleans()),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(initial=st.integers(0, 10), steps=ops)
def test_client_view_follows_announcements(initial: int, steps: list[tuple[str, object]]) -> None:
    truth = list(range(1, initial + 1))  # UIDs in the folder (the store's side)
    flags: dict[int, frozenset[str]] = {u: frozenset() for u in truth}
    next_uid = initial + 1
    sel = Selected.from_snapshot(OWNER, Snapshot(7, "INBOX", 1, next_uid, [meta(u) for u in truth]), False)
    client = list(truth)  # what the client believes, rebuilt only from responses

    def apply(lines: list[bytes]) -> None:
        for line in lines:
            words = line.split()
            if words[2] == b"EXPUNGE":
                del client[int(words[1]) - 1]
            elif words[2] == b"EXISTS":
                while len(client) < int(words[1]):
                    client.append(sel.uids[len(client)])
            elif words[2] == b"FETCH":
                seq, uid = int(words[1]), int(words[4])
                assert client[seq - 1] == uid  # the number the client holds names that UID

    for op, arg in steps:
        if op == "new":
            for _ in range(int(arg)):  # type: ignore[call-overload]
                truth.append(next_uid)
                flags[next_uid] = frozenset()
                sel.feed(Change("message.new", 1, "INBOX", next_uid, meta=meta(next_uid)))
                next_uid += 1
        elif op == "expunge" and truth:
            uid = truth.pop(int(arg) % len(truth))  # type: ignore[call-overload]
            sel.feed(Change("message.expunged", 1, "INBOX", uid))
        elif op == "flag" and truth:
            uid = truth[int(arg) % len(truth)]  # type: ignore[call-overload]
            flags[uid] = flags[uid] ^ {"\\Seen"}
            sel.feed(Change("message.flags", 1, "INBOX", uid, flags=flags[uid]))
        elif op == "sync":
            apply(asyncio.run(sel.updates(NoStore(), allow_expunge=bool(arg))))  # type: ignore[arg-type]
            # between announcements, the session's numbering is exactly the client's
            assert sel.uids == client
            assert all(sel.seq_of(u) == i + 1 for i, u in enumerate(client))
    apply(asyncio.run(sel.updates(NoStore(), allow_expunge=True)))  # type: ignore[arg-type]
    assert client == truth == sel.uids
    assert all(sel.meta[u].flags == flags[u] for u in truth)


def test_changes_of_other_folders_are_ignored() -> None:
    sel = Selected.from_snapshot(OWNER, Snapshot(7, "INBOX", 1, 1, []), False)
    sel.feed(Change("message.new", 1, "Sent", 1, meta=meta(1)))
    sel.feed(Change("message.new", 2, "INBOX", 1, meta=meta(1)))
    assert not sel.has_pending


def test_nothing_pending_answers_nothing_without_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 §3: updates() runs after every command; with nothing to announce it
    returns at once (the old code went through every step, the live-search refresh
    included), and still tells a modseq of a change that needed no announcement."""
    from relay.imap import contextsearch

    def refresh(*_: object) -> list[bytes]:
        raise AssertionError("no step when nothing is pending")

    monkeypatch.setattr(contextsearch, "refresh", refresh)
    sel = Selected.from_snapshot(OWNER, Snapshot(7, "INBOX", 1, 2, [meta(1)]), False)
    sel.feed(Change("folder.renamed", 1, "INBOX", 0, modseq=9))  # no announcement, a modseq
    assert asyncio.run(sel.updates(NoStore(), allow_expunge=True)) == []  # type: ignore[arg-type]
    assert sel.highestmodseq == 9
    sel.feed(Change("message.expunged", 1, "INBOX", 1, modseq=10))
    # during FETCH (no EXPUNGE allowed) the expunge waits: nothing either, its modseq not told
    assert asyncio.run(sel.updates(NoStore(), allow_expunge=False)) == []  # type: ignore[arg-type]
    assert sel.highestmodseq == 9
