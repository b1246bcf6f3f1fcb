"""Folder and message operations the IMAP server uses (mailbox_store/folders.py, messages.py)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailbox_store.folders import FolderError
from mailbox_store.store import Store
from policy.recipients import MailboxState
from sqlalchemy import text

from tests.pg import sql

INS = "279035121518989"


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\nFrom: a@b.fr\r\n\r\nbody {n}\r\n".encode()


async def test_snapshot_flags_expunge(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(5):
        await store.deliver([mb], msg(i))
    snap = await store.snapshot(mb.id, "INBOX")
    assert [m.uid for m in snap.messages] == [1, 2, 3, 4, 5] and snap.uidnext == 6
    q = store.feed.subscribe()
    new = await store.store_flags(mb.id, "INBOX", [2, 4, 99], "+", ["\\Deleted", "\\Seen"])
    assert new == {2: frozenset({"\\Deleted", "\\Seen"}), 4: frozenset({"\\Deleted", "\\Seen"})}
    assert await store.store_flags(mb.id, "INBOX", [4], "-", ["\\Seen"]) == {4: frozenset({"\\Deleted"})}
    assert await store.store_flags(mb.id, "INBOX", [5], "", ["$Label1"]) == {5: frozenset({"$Label1"})}
    kinds = [q.get_nowait().kind for _ in range(q.qsize())]
    assert kinds.count("message.flags") == 4
    assert await store.expunge(mb.id, "INBOX", only_uids=[4]) == [4]
    assert await store.expunge(mb.id, "INBOX") == [2]
    snap = await store.snapshot(mb.id, "INBOX")
    assert [m.uid for m in snap.messages] == [1, 3, 5]
    assert (await store.snapshot(mb.id, "INBOX", since_uid=3)).messages[0].uid == 5
    assert await store.fetch_raw(INS, "INBOX", 3) == msg(2)


async def test_copy_and_move_share_blobs_and_keep_decrypting(store: Store, tmp_path: Path, store_url: str) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(3):
        await store.deliver([mb], msg(i))
    await store.store_flags(mb.id, "INBOX", [2], "+", ["\\Flagged"])
    res = await store.copy(mb.id, "INBOX", [2, 3, 42], "Archive")
    assert res.pairs == [(2, 1), (3, 2)]
    assert res.uidvalidity == (await store.folder(mb.id, "Archive")).uidvalidity  # type: ignore[union-attr]
    assert await store.fetch_raw(INS, "Archive", 1) == msg(1)
    assert (await store.snapshot(mb.id, "Archive")).messages[0].flags == frozenset({"\\Flagged"})
    moved = await store.copy(mb.id, "INBOX", [1], "Archive", move=True)
    assert moved.pairs == [(1, 3)]
    assert [m.uid for m in (await store.snapshot(mb.id, "INBOX")).messages] == [2, 3]
    with sql(store_url) as con:
        assert con.execute(text("SELECT count(*) FROM blobs")).scalar() == 3  # copies share blobs
    # expunging one copy keeps the blob the other copy uses
    await store.store_flags(mb.id, "INBOX", [2], "+", ["\\Deleted"])
    await store.expunge(mb.id, "INBOX")
    assert await store.fetch_raw(INS, "Archive", 1) == msg(1)
    with pytest.raises(FolderError) as e:
        await store.copy(mb.id, "INBOX", [3], "Nowhere")
    assert e.value.code == "TRYCREATE"


async def test_folder_lifecycle(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    names = [f.name for f in await store.list_folders(mb.id)]
    assert names == ["INBOX", "Sent", "Drafts", "Trash", "Archive", "Dossier médical"]
    created = await store.create_folder(mb.id, "Santé/Analyses")
    assert created.name == "Santé/Analyses"
    assert {"Santé", "Santé/Analyses"} <= {f.name for f in await store.list_folders(mb.id)}
    with pytest.raises(FolderError) as e:
        await store.create_folder(mb.id, "Santé")
    assert e.value.code == "ALREADYEXISTS"
    old_validity = created.uidvalidity
    await store.deliver([mb], msg(1), folder="Santé/Analyses")
    await store.rename_folder(mb.id, "Santé", "Medical")
    assert {"Medical", "Medical/Analyses"} <= {f.name for f in await store.list_folders(mb.id)}
    assert await store.fetch_raw(INS, "Medical/Analyses", 1) == msg(1)
    with pytest.raises(FolderError) as e:
        await store.delete_folder(mb.id, "Medical")
    assert e.value.code == "INUSE"
    await store.delete_folder(mb.id, "Medical/Analyses")
    again = await store.create_folder(mb.id, "Medical/Analyses")
    assert again.uidvalidity > old_validity  # RFC 3501 §2.3.1.1
    for protected in ("INBOX", "Sent", "Trash"):
        with pytest.raises(FolderError):
            await store.delete_folder(mb.id, protected)
    # RFC 3501 §6.3.6: CREATE does not subscribe; a subscription outlives its folder
    assert not (await store.folder(mb.id, "Medical")).subscribed  # type: ignore[union-attr]
    await store.set_subscribed(mb.id, "Medical/Analyses", True)
    assert (await store.folder(mb.id, "Medical/Analyses")).subscribed  # type: ignore[union-attr]
    await store.delete_folder(mb.id, "Medical/Analyses")
    assert "Medical/Analyses" in await store.subscriptions(mb.id)
    await store.set_subscribed(mb.id, "Medical/Analyses", False)
    assert "Medical/Analyses" not in await store.subscriptions(mb.id)
    with pytest.raises(FolderError):  # neither subscribed nor a folder
        await store.set_subscribed(mb.id, "Nowhere", False)


async def test_uidvalidity_never_reused_within_a_second(store: Store) -> None:
    """RFC 3501 §2.3.1.1 (imaptest "uidvalidity"): delete and re-create at once."""
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    first = await store.create_folder(mb.id, "Analyses")
    await store.delete_folder(mb.id, "Analyses")
    second = await store.create_folder(mb.id, "Analyses")
    assert second.uidvalidity != first.uidvalidity
    seen = {f.uidvalidity for f in await store.list_folders(mb.id)}
    await store.delete_folder(mb.id, "Analyses")
    third = await store.create_folder(mb.id, "Analyses")
    assert third.uidvalidity not in seen | {first.uidvalidity}


async def test_recent_is_claimed_once(store: Store) -> None:
    """RFC 3501 §2.3.2: the first claim gets the new messages, a later one none."""
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    await store.deliver([mb], msg(1))
    await store.deliver([mb], msg(2))
    snap = await store.snapshot(mb.id, "INBOX")
    assert snap.first_recent_uid == 1 and await store.recent_count(snap.folder_id) == 2
    assert await store.claim_recent(snap.folder_id, snap.uidnext) == 1  # both are the caller's
    assert await store.recent_count(snap.folder_id) == 0
    assert await store.claim_recent(snap.folder_id, snap.uidnext) >= snap.uidnext  # none left
    await store.deliver([mb], msg(3))
    assert await store.recent_count(snap.folder_id) == 1
    assert await store.claim_recent(snap.folder_id, 4) == 3


async def test_rename_inbox_moves_its_messages(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    await store.deliver([mb], msg(1))
    await store.rename_folder(mb.id, "INBOX", "Old")
    assert (await store.snapshot(mb.id, "INBOX")).messages == []
    assert await store.fetch_raw(INS, "Old", 1) == msg(1)
    await store.deliver([mb], msg(2))
    assert [m.uid for m in (await store.snapshot(mb.id, "INBOX")).messages] == [2]


async def test_concurrent_flag_changes_and_deliveries(store: Store) -> None:
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(10):
        await store.deliver([mb], msg(i))
    await asyncio.gather(*(store.store_flags(mb.id, "INBOX", [u], "+", ["\\Seen"]) for u in range(1, 11)),
                         *(store.deliver([mb], msg(100 + i)) for i in range(10)))
    snap = await store.snapshot(mb.id, "INBOX")
    assert [m.uid for m in snap.messages] == list(range(1, 21))
    assert all("\\Seen" in m.flags for m in snap.messages[:10])


async def test_a_keyword_named_seen_does_not_count_as_read(store: Store) -> None:
    # PostgreSQL's LIKE takes a backslash as its escape: LIKE '%\Seen%' without an ESCAPE
    # clause matched the keyword "Seen" too (issue 14). Both unseen counts must say 2.
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(3):
        await store.deliver([mb], msg(i))
    await store.store_flags(mb.id, "INBOX", [1], "+", ["Seen"])
    await store.store_flags(mb.id, "INBOX", [2], "+", ["\\Seen"])
    [inbox] = await store.list_folders(mb.id, "INBOX")
    assert (inbox.messages, inbox.unseen) == (3, 2)
    page = await store.folder_page(mb.id, "INBOX", 0, 10)
    assert page is not None and (page.total, page.unseen) == (3, 2)
    # a keyword containing "Deleted" is not \Deleted: expunge leaves it
    await store.store_flags(mb.id, "INBOX", [3], "+", ["Deleted"])
    assert await store.expunge(mb.id, "INBOX") == []


async def test_allowing_a_pharmacy_twice_is_refused_on_every_engine(store: Store) -> None:
    # the INSERT … ON CONFLICT DO NOTHING is judged by RETURNING: psycopg's rowcount is -1
    from mailbox_store.conversations import PharmacyError
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    await store.allow_pharmacy(mb, "pharmacie@officine.mssante.fr")
    assert await store.pharmacies(mb) == ["pharmacie@officine.mssante.fr"]
    with pytest.raises(PharmacyError, match="already allowed"):
        await store.allow_pharmacy(mb, "pharmacie@officine.mssante.fr")
    await store.revoke_pharmacy(mb, "pharmacie@officine.mssante.fr")
    with pytest.raises(PharmacyError, match="not an allowed pharmacy"):
        await store.revoke_pharmacy(mb, "pharmacie@officine.mssante.fr")
    assert await store.pharmacies(mb) == []


async def test_concurrent_claims_of_one_delivery_cost_one_write(store: Store) -> None:
    # issue 12 §4: 10,000 IDLE sessions told of one message claimed it with 10,000 writer jobs
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(2):
        await store.deliver([mb], msg(i))
    snap = await store.snapshot(mb.id, "INBOX")
    jobs = store.writer.jobs
    firsts = await asyncio.gather(*(store.claim_recent(snap.folder_id, snap.uidnext) for _ in range(50)))
    assert store.writer.jobs - jobs == 1
    assert sorted(firsts) == [1] + [snap.uidnext] * 49  # exactly one session got both messages
    assert await store.recent_count(snap.folder_id) == 0
