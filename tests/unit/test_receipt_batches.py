"""Issue 12 §3: read receipts are looked for once per folder and burst of \\Seen
changes (relay/delivery/receipts.py), and a message found without one is not asked
about again; a folder change of the mailbox forgets what was learnt (a re-created
folder reuses UIDs). The store is a counting fake: the SQL is tested on both engines
in test_receipt_reads_on_the_real_store with the run's store."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mailbox_store.feed import Change
from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.delivery import receipts
from relay.delivery.receipts import ReceiptSender

SEEN = frozenset({"\\Seen"})


class FakeStore:
    def __init__(self, pending: set[int]) -> None:
        self.asked: list[tuple[int, str, list[int]]] = []
        self.claimed: list[int] = []
        self.pending = pending

    async def receipts_pending(self, mailbox_id: int, folder: str, uids: list[int]) -> set[int]:
        self.asked.append((mailbox_id, folder, list(uids)))
        return self.pending & set(uids)

    async def claim_receipt(self, mailbox_id: int, folder: str, uid: int) -> None:
        self.claimed.append(uid)  # already sent elsewhere: nothing queued
        return None


def flags(uid: int, seen: bool = True, mailbox_id: int = 1, folder: str = "INBOX") -> Change:
    return Change("message.flags", mailbox_id, folder, uid, flags=SEEN if seen else frozenset())


async def settle(sender: ReceiptSender) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
        if not sender._tasks:
            return


async def test_a_burst_is_one_read_and_a_message_without_receipt_is_not_asked_again() -> None:
    store = FakeStore(pending={3})
    sender = ReceiptSender(SimpleNamespace(store=store))  # type: ignore[arg-type]
    for uid in (1, 2, 3, 4):
        sender.on_change(flags(uid))
    sender.on_change(flags(5, seen=False))  # not \Seen: no candidate
    sender.on_change(flags(9, folder="Sent"))
    await settle(sender)
    assert store.asked == [(1, "INBOX", [1, 2, 3, 4]), (1, "Sent", [9])]  # the old code: one read per message
    assert store.claimed == [3]
    for uid in (1, 2, 3, 4):  # \Seen stays on, another flag changes: 1, 2, 4 are known
        sender.on_change(flags(uid))
    await settle(sender)
    assert store.asked[2:] == [(1, "INBOX", [3])]
    # a folder change of the mailbox forgets it: the UIDs may name other messages now
    sender.on_change(Change("folder.deleted", 1, "INBOX", 0))
    sender.on_change(flags(1))
    await settle(sender)
    assert store.asked[3:] == [(1, "INBOX", [1])]


async def test_what_was_learnt_is_bounded_and_forgotten_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore(pending=set())
    sender = ReceiptSender(SimpleNamespace(store=store))  # type: ignore[arg-type]
    monkeypatch.setattr(receipts, "NO_RECEIPT_KEPT", 3)
    for uid in (1, 2, 3, 4):
        sender.on_change(flags(uid))
    await settle(sender)
    assert sender._none_count <= 3
    sender.on_change(flags(10))
    await settle(sender)
    asked = len(store.asked)
    sender.on_change(flags(10))
    await settle(sender)
    assert len(store.asked) == asked  # known
    sender._none_since -= receipts.NO_RECEIPT_TTL + 1
    sender.on_change(flags(10))
    await settle(sender)
    assert len(store.asked) == asked + 1  # forgotten after NO_RECEIPT_TTL


async def test_receipt_reads_on_the_real_store(store: Store) -> None:
    mb = await store.create_mailbox("279035121518989", MailboxState.ACTIVE)
    for i in range(4):
        await store.deliver([mb], b"From: a@b\r\nSubject: s%d\r\n\r\nx\r\n" % i,
                            receipt=("dr@test-operator.mssante.fr", "<m%d@b>" % i) if i in (1, 3) else None)
    assert await store.receipts_pending(mb.id, "INBOX", [1, 2, 3, 4, 99]) == {2, 4}
    assert await store.receipts_pending(mb.id, "Nope", [2]) == set()
    assert await store.claim_receipt(mb.id, "INBOX", 2) is not None
    assert await store.receipts_pending(mb.id, "INBOX", [1, 2, 3, 4]) == {4}  # sent: no longer pending
    assert await store.receipts_pending(mb.id, "INBOX", list(range(1, 1200))) == {4}  # several IN lists
