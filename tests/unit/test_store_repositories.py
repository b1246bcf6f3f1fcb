"""Store composed of repositories sharing one core and one keyring (mailbox_store/
repository.py, core.py; issue 15 §5): the public API is unchanged, a key unwrapped by
one repository serves every other one, and the key cache stays bounded."""
from __future__ import annotations

import inspect
import os
import uuid

import pytest

from mailbox_store.crypto import MasterKey
from mailbox_store.repository import Repository
from mailbox_store.store import REPOSITORIES, Store

INS_A = "279035121518989"
INS_B = "185052A00412368"


def message(subject: str = "Compte rendu") -> bytes:
    return (f"From: dr.house@hopital.mssante.fr\r\nTo: {INS_A}@patient.mssante.fr\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@hopital.mssante.fr>\r\n\r\n"
            "Bonjour,\r\nvos resultats\r\n").encode()


class CountingMaster(MasterKey):
    """A master key that counts its unwraps (one per data key taken out of the database)."""

    unwraps = 0

    def unwrap(self, wrapped: bytes, owner: str, key_id: str | None = None) -> bytes:
        CountingMaster.unwraps += 1
        return super().unwrap(wrapped, owner, key_id)


@pytest.fixture
async def store(store_url: str):
    CountingMaster.unwraps = 0
    s = await Store.open(store_url, CountingMaster(os.urandom(32)), key_cache=1)
    yield s
    await s.close()


def test_every_repository_method_is_a_store_method_with_its_signature() -> None:
    for attr, repo in REPOSITORIES.items():
        assert issubclass(repo, Repository)
        for name, member in vars(repo).items():
            if name.startswith("_"):
                continue
            assert hasattr(Store, name), f"Store.{name} ({repo.__name__}) is missing"
            if inspect.isfunction(member) and name not in vars(Store):
                on_store = getattr(Store, name)
                assert inspect.signature(on_store) == inspect.signature(member), name
                assert inspect.iscoroutinefunction(on_store) == inspect.iscoroutinefunction(member), name


def test_store_is_not_made_of_mixins() -> None:
    assert Store.__mro__ == (Store, object)


async def test_the_repositories_share_one_core_and_one_keyring(store: Store) -> None:
    repos = [getattr(store, attr) for attr in REPOSITORIES]
    assert len(repos) == len(REPOSITORIES) and all(isinstance(r, Repository) for r in repos)
    assert all(r.core is store.core for r in repos)
    assert store._keys is store.core.keyring.cache
    assert all(r.writer is store.writer and r.engine is store.engine for r in repos)


async def test_a_key_unwrapped_for_one_repository_serves_the_others(store: Store) -> None:
    box = await store.create_mailbox(INS_A)
    await store.deliver([box], message())
    other = await store.create_mailbox(INS_B)
    await store._data_key(other.id, other.ins)  # key_cache=1: box's key is out of the cache
    CountingMaster.unwraps = 0
    # the webmail's page read (pages), the thread keys (thread), the queue (outbound)
    found = await store.message_with_raw(box, "INBOX", 1)
    assert found is not None and found[1].startswith(b"From: dr.house")
    aead = await store.page_ops._data_key(box.id, box.ins)
    assert await store.thread_ops._data_key(box.id, box.ins) is aead
    assert await store.queue_ops._data_key(box.id, box.ins) is aead
    assert await store.document_ops._data_key(box.id, box.ins) is aead
    assert await store._data_key(box.id, box.ins) is aead
    assert CountingMaster.unwraps == 1


async def test_the_shared_key_cache_stays_bounded(store: Store) -> None:
    # key_cache=1: the second mailbox's key pushes the first one's out, for every repository
    a = await store.create_mailbox(INS_A)
    b = await store.create_mailbox(INS_B)
    CountingMaster.unwraps = 0
    await store.page_ops._data_key(a.id, a.ins)
    await store.thread_ops._data_key(b.id, b.ins)
    assert len(store.core.keyring.cache) == 1
    await store.document_ops._data_key(a.id, a.ins)
    assert CountingMaster.unwraps == 3


async def test_the_node_id_and_the_executor_are_the_cores(store: Store) -> None:
    store._node_id = "node-a"
    assert store.node_id == store.claim_ops.node_id == "node-a"
    marker = object()
    store.executor = marker  # type: ignore[assignment]
    assert store.core.executor is marker
    store.executor = None


async def test_a_deleted_folders_recent_mark_is_forgotten_by_the_recent_repository(store: Store) -> None:
    # the folders repository deletes, the recent repository remembers claims: they share
    # the marks through the core, so a new folder that gets the old id (SQLite may reuse
    # it) starts with its messages \Recent (RFC 3501 §2.3.2)
    box = await store.create_mailbox(INS_A)
    old = await store.create_folder(box.id, "Dossiers")
    await store.deliver([box], message(), folder="Dossiers")
    assert await store.claim_recent(old.id, 2) == 1
    assert store.core.recent_marks[old.id] == (0, 2)
    await store.delete_folder(box.id, "Dossiers")
    assert old.id not in store.core.recent_marks
    new = await store.create_folder(box.id, "Dossiers")
    await store.deliver([box], message(), folder="Dossiers")
    assert await store.claim_recent(new.id, 2) == 1  # the new folder's message is \Recent here


async def test_a_recent_mark_answers_only_for_the_folder_it_was_claimed_in(store: Store) -> None:
    # with imap.processes, another process may delete a folder and a new one get its id
    # (SQLite): this process's remembered mark must not say the new folder's messages
    # were claimed (imaptest's copy group over two processes)
    box = await store.create_mailbox(INS_A)
    f = await store.create_folder(box.id, "Dossiers")
    await store.deliver([box], message(), folder="Dossiers")
    store.core.recent_marks[f.id] = (f.uidvalidity - 1, 50)  # remembered from the id's former folder
    assert await store.claim_recent(f.id, 2, uidvalidity=f.uidvalidity) == 1  # the message is \Recent here
    assert store.core.recent_marks[f.id] == (f.uidvalidity, 2)
    assert await store.claim_recent(f.id, 2, uidvalidity=f.uidvalidity) == 2  # and nobody else's
