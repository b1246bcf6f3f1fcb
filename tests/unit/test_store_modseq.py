"""Modification sequences (RFC 7162) kept by every write path of the store
(mailbox_store/modseq.py): delivery's group commit, APPEND, STORE, COPY/MOVE,
EXPUNGE, the Sent copy of a submission, an INBOX rename, an admin purge."""
from __future__ import annotations

import asyncio
import datetime as dt


from mailbox_store.outbound import Recipient
from mailbox_store.store import Store
from policy.recipients import MailboxState

INS = "279035121518989"


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\nFrom: a@b.fr\r\n\r\nbody {n}\r\n".encode()


async def _state(store: Store, mailbox_id: int, folder: str = "INBOX") -> tuple[int, dict[int, int]]:
    snap = await store.snapshot(mailbox_id, folder)
    return snap.highestmodseq, {m.uid: m.modseq for m in snap.messages}


async def test_group_commit_delivery_stamps_modseq(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    start, _ = await _state(store, mb.id)
    # delivered concurrently: the writer applies them as one group (one modseq)
    await asyncio.gather(*[store.deliver([mb], msg(i)) for i in range(10)])
    high, mods = await _state(store, mb.id)
    assert len(mods) == 10 and high > start
    assert all(start < m <= high for m in mods.values())
    assert max(mods.values()) == high


async def test_store_expunge_copy_move_raise_modseq(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(4):
        await store.deliver([mb], msg(i))
    high0, mods0 = await _state(store, mb.id)
    q = store.feed.subscribe()
    done = await store.store_flags_if(mb.id, "INBOX", [1, 2], "+", ["\\Seen"])
    high1, mods1 = await _state(store, mb.id)
    assert high1 == high0 + 1 and mods1[1] == mods1[2] == high1 and mods1[3] == mods0[3]
    assert done.modseqs == {1: high1, 2: high1} and done.modified == []
    assert {c.modseq for c in [q.get_nowait() for _ in range(q.qsize())]} == {high1}
    # a STORE that changes nothing changes no modseq
    await store.store_flags(mb.id, "INBOX", [1], "+", ["\\Seen"])
    assert (await _state(store, mb.id))[0] == high1
    # UNCHANGEDSINCE (RFC 7162 §3.1.3): message 1 changed after high0, message 3 did not
    done = await store.store_flags_if(mb.id, "INBOX", [1, 3], "+", ["\\Flagged"], unchanged_since=high0)
    assert done.modified == [1] and "\\Flagged" not in done.flags[1] and "\\Flagged" in done.flags[3]
    high2, mods2 = await _state(store, mb.id)
    assert mods2[1] == high1 and mods2[3] == high2 == high1 + 1
    # EXPUNGE: the UID is remembered with its modseq (QRESYNC VANISHED)
    await store.store_flags(mb.id, "INBOX", [4], "+", ["\\Deleted"])
    assert await store.expunge(mb.id, "INBOX") == [4]
    high3, _ = await _state(store, mb.id)
    assert await store.vanished_since((await store.snapshot(mb.id, "INBOX")).folder_id, high2) == [4]
    # COPY raises the target's modseq; MOVE also the source's, and records the UID gone
    arch0, _ = await _state(store, mb.id, "Archive")
    await store.copy(mb.id, "INBOX", [1], "Archive")
    arch1, amods = await _state(store, mb.id, "Archive")
    assert arch1 == arch0 + 1 and amods == {1: arch1}
    await store.copy(mb.id, "INBOX", [2], "Archive", move=True)
    high4, mods4 = await _state(store, mb.id)
    arch2, amods = await _state(store, mb.id, "Archive")
    assert high4 > high3 and 2 not in mods4 and amods[2] == arch2 > arch1
    fid = (await store.snapshot(mb.id, "INBOX")).folder_id
    assert await store.vanished_since(fid, high3) == [2]
    assert await store.vanished_since(fid, 0) == [2, 4]
    # STATUS HIGHESTMODSEQ reads the same value
    assert (await store.folder(mb.id, "INBOX")).highestmodseq == high4  # type: ignore[union-attr]


async def test_sent_copy_rename_and_purge_raise_modseq(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    sent0, _ = await _state(store, mb.id, "Sent")
    await store.enqueue(mb, msg(1), f"{INS}@patient.mssante.fr",
                        [Recipient("dr@test-operator.mssante.fr", "test-operator.mssante.fr")],
                        "reply", dt.timedelta(days=1), sent_folder="Sent")
    sent1, smods = await _state(store, mb.id, "Sent")
    assert sent1 == sent0 + 1 and smods == {1: sent1}
    for i in range(3):
        await store.deliver([mb], msg(i))
    inbox_high, _ = await _state(store, mb.id)
    inbox_fid = (await store.snapshot(mb.id, "INBOX")).folder_id
    await store.purge_messages(INS, [("INBOX", 1)])
    assert await store.vanished_since(inbox_fid, inbox_high) == [1]
    high, _ = await _state(store, mb.id)
    # RFC 3501 §6.3.5: renaming INBOX empties it: its UIDs vanished; the new folder's
    # HIGHESTMODSEQ covers the modseqs its messages carry
    await store.rename_folder(mb.id, "INBOX", "Ancien")
    assert await store.vanished_since(inbox_fid, high) == [2, 3]
    new_high, new_mods = await _state(store, mb.id, "Ancien")
    assert set(new_mods) == {2, 3} and new_high >= max(new_mods.values())


async def test_internal_date_keeps_its_instant_whatever_its_zone(store: Store) -> None:
    # SQLite keeps no zone: an APPEND dated 01:30 +0200 was read back as 01:30 UTC
    # (SORT ARRIVAL/DATE then misplaced it against messages of other zones)
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    when = dt.datetime(2008, 2, 22, 1, 30, 23, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    await store.deliver([mb], msg(1), internal_date=when)
    await store.deliver_all(mb, [(msg(2), when, ["\\Seen"])], "INBOX")
    snap = await store.snapshot(mb.id, "INBOX")
    assert [m.internal_date for m in snap.messages] == [when, when]
    assert snap.messages[1].flags == frozenset({"\\Seen"})
