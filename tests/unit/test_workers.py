"""Issue 15 §2: the [workers] section, the bytes-in-flight budget (relay/smtp/budget.py),
sealing a message from parts (mailbox_store/crypto.py), and the bounded cache of
unwrapped mailbox keys (mailbox_store/keycache.py)."""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from mailbox_store.crypto import MasterKey, open_blob, seal_blob_parts, wrap_content_key
from mailbox_store.keycache import KeyCache
from mailbox_store.store import Store, sqlite_url
from policy.recipients import MailboxState
from relay.core.config import ConfigError, load_config
from relay.core.pools import Pools, run_in
from relay.smtp.budget import ByteBudget, declared_size, reserve
from tests.unit.test_config import edited, write

INSES = ["279035121518989", "185052A00412368", "292072B05001788"]


@pytest.fixture
def template(dev_instance: Path) -> str:
    """relay.toml as `init` writes it."""
    return (dev_instance / "relay.toml").read_text(encoding="utf-8")


# ---- [workers] -------------------------------------------------------------------

def test_workers_section_defaults_and_values(tmp_path: Path, template: str) -> None:
    cfg = load_config(write(tmp_path, template))
    cores = os.cpu_count() or 1
    assert cfg.workers.parse == max(1, min(8, cores)) and cfg.workers.dkim >= 2
    assert (cfg.workers.max_bytes_in_flight, cfg.workers.bytes_wait) == (268_435_456, 30.0)
    assert cfg.store_key_cache == 10_000
    cfg = load_config(write(tmp_path, edited(template, "# parse = 2\n", "parse = 3\n")
                            .replace("bytes_wait = 30", "bytes_wait = 0.5")
                            .replace("key_cache = 10000", "key_cache = 7")))
    assert (cfg.workers.parse, cfg.workers.bytes_wait, cfg.store_key_cache) == (3, 0.5, 7)


@pytest.mark.parametrize("field, old, new", [
    ("workers.parse", "# parse = 2\n", "parse = 0\n"),
    ("workers.crypto", "# crypto = 2\n", "crypto = 1.5\n"),
    ("workers.max_bytes_in_flight", "max_bytes_in_flight = 268435456", "max_bytes_in_flight = -1"),
    ("workers.bytes_wait", "bytes_wait = 30", 'bytes_wait = "30"'),
    ("store.key_cache", "key_cache = 10000", "key_cache = 0"),
])
def test_workers_errors_name_the_field(tmp_path: Path, template: str, field: str, old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        load_config(write(tmp_path, edited(template, old, new)))


async def test_pools_are_separate_and_bounded() -> None:
    pools = Pools.start(parse=1, crypto=1, dkim=1)
    release = threading.Event()
    try:
        held = asyncio.ensure_future(run_in(pools.parse, release.wait, 30))
        # the parse pool's one thread is taken; the crypto pool still answers
        assert await asyncio.wait_for(run_in(pools.crypto, sum, [1, 2]), 30) == 3
        assert not held.done()
    finally:
        release.set()
        await held
        pools.shutdown()


# ---- bytes in flight ---------------------------------------------------------------

def test_declared_size() -> None:
    assert declared_size(["SIZE=1000", "BODY=8BITMIME"], 5000) == 1000
    assert declared_size(["size=9000"], 5000) == 5000
    assert declared_size([], 5000) == 5000
    assert declared_size(["SIZE=abc"], 5000) == 5000


async def test_budget_waits_then_gives_up() -> None:
    budget = ByteBudget(1000)
    assert await budget.acquire(800, 1)
    assert not await budget.acquire(300, 0.05)  # would pass the bound: refused past the wait
    assert budget.used == 800
    waiting = asyncio.ensure_future(budget.acquire(300, 30))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    budget.release(800)
    assert await waiting and budget.used == 300


async def test_budget_first_come_first_served() -> None:
    budget = ByteBudget(1000)
    assert await budget.acquire(900, 1)
    big = asyncio.ensure_future(budget.acquire(1000, 30))
    await asyncio.sleep(0.01)
    # a small request that would fit must not overtake the large one already waiting
    assert not await budget.acquire(50, 0.05)
    budget.release(900)
    assert await big and budget.used == 1000


async def test_budget_cancelled_waiter_frees_its_place() -> None:
    budget = ByteBudget(1000)
    assert await budget.acquire(1000, 1)
    first = asyncio.ensure_future(budget.acquire(1000, 30))
    second = asyncio.ensure_future(budget.acquire(10, 30))
    await asyncio.sleep(0.01)
    first.cancel()
    budget.release(1000)
    assert await second and budget.used == 10


async def test_reservation_grows_only_with_free_budget() -> None:
    budget = ByteBudget(300_000)
    r = await reserve(budget, ["SIZE=1000"], 25_000_000, 1)
    assert r is not None and r.reserved == 1000 + 65536
    assert r.fits(50_000)
    assert r.fits(200_000) and r.reserved >= 200_000  # free: grown
    other = await reserve(budget, ["SIZE=10"], 25_000_000, 1)
    assert other is not None
    assert not r.fits(290_000)  # the rest is taken: no waiting in the middle of DATA
    r.release()
    other.release()
    assert budget.used == 0


async def test_reservation_capped_to_the_whole_budget() -> None:
    budget = ByteBudget(100_000)
    r = await reserve(budget, [], 25_000_000, 1)  # no SIZE: the largest message, capped
    assert r is not None and r.reserved == 100_000 and budget.used == 100_000


# ---- sealing from parts --------------------------------------------------------------

@pytest.mark.parametrize("parts", [(b"", b""), (b"Received: x\r\n", b"A: b\r\n\r\nbody" * 5000),
                                   (b"", os.urandom(100_003))])
def test_seal_blob_parts_opens_as_the_joined_message(parts: tuple[bytes, bytes]) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    data_key = AESGCM(AESGCM.generate_key(256))
    content_key, sealed = seal_blob_parts("blob1", parts)
    wrapped = wrap_content_key(data_key, "owner", "blob1", content_key)
    assert open_blob(data_key, "owner", "blob1", wrapped, bytes(sealed)) == b"".join(parts)
    assert len(sealed) == 12 + sum(map(len, parts)) + 16


# ---- the mailbox key cache -------------------------------------------------------------

def test_key_cache_drops_the_least_recently_used() -> None:
    cache = KeyCache(2)
    a, b, c = object(), object(), object()
    cache.put(1, a)  # type: ignore[arg-type]
    cache.put(2, b)  # type: ignore[arg-type]
    assert cache.get(1) is a  # 1 is now the most recent
    cache.put(3, c)  # type: ignore[arg-type]
    assert cache.get(2) is None and cache.get(1) is a and cache.get(3) is c and len(cache) == 2
    with pytest.raises(ValueError):
        KeyCache(0)


async def test_store_key_cache_is_bounded_and_reads_survive_eviction(tmp_path: Path) -> None:
    store = await Store.open(sqlite_url(tmp_path / "relay.db"), MasterKey(os.urandom(32)), key_cache=2)
    try:
        boxes = [await store.create_mailbox(ins, MailboxState.ACTIVE) for ins in INSES]
        for mb in boxes:
            await store.deliver([mb], b"Subject: x\r\n\r\nbody of " + mb.ins.encode() + b"\r\n")
        assert len(store._keys) == 2  # three mailboxes used, two keys kept
        for mb in boxes:  # the evicted key is unwrapped again
            assert (await store.fetch_raw(mb.ins, "INBOX", 1)).endswith(b"body of " + mb.ins.encode() + b"\r\n")
        assert len(store._keys) == 2
    finally:
        await store.close()


async def test_store_deliver_with_prefix_stores_the_joined_message(tmp_path: Path) -> None:
    store = await Store.open(sqlite_url(tmp_path / "relay.db"), MasterKey(os.urandom(32)))
    try:
        mb = await store.create_mailbox(INSES[0], MailboxState.ACTIVE)
        body = b"Message-ID: <a@b>\r\nSubject: x\r\n\r\n" + b"y" * 400_000 + b"\r\n"  # sealed off the loop
        await store.deliver([mb], body, prefix=b"Received: from a by b\r\n")
        assert await store.fetch_raw(mb.ins, "INBOX", 1) == b"Received: from a by b\r\n" + body
        assert (await store.messages(mb.ins, "INBOX"))[0].size == len(body) + 23
    finally:
        await store.close()


# ---- the parse pool in worker processes ---------------------------------------------------

MIME = (b"From: dr@hopital.mssante.fr\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour\r\n")


async def test_process_parse_pool_inspects_and_survives_a_dead_worker() -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from dossier_bridge.dossier import Filing, inspect_message
    from policy.attachments import AttachmentLimits
    from relay.core.pools import ParseWorkerLost

    pools = Pools.start(parse=1, crypto=1, dkim=1, parse_mode="processes")
    try:
        got = await asyncio.wait_for(pools.inspect(len(MIME), inspect_message, MIME, [], AttachmentLimits()), 60)
        assert isinstance(got, Filing)
        # a worker that dies (killed, out of memory): the call fails, never a result
        pools.parse.shutdown()
        pools.parse = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=os._exit, initargs=(3,))
        with pytest.raises(ParseWorkerLost):
            await asyncio.wait_for(pools.inspect(len(MIME), inspect_message, MIME, [], AttachmentLimits()), 60)
        # ... and the pool was replaced: the next message is inspected
        got = await asyncio.wait_for(pools.inspect(len(MIME), inspect_message, MIME, [], AttachmentLimits()), 60)
        assert isinstance(got, Filing)
    finally:
        pools.shutdown()


def test_parse_mode_checked(tmp_path: Path, template: str) -> None:
    with pytest.raises(ConfigError, match=r"^workers\.parse_mode:"):
        load_config(write(tmp_path, edited(template, 'parse_mode = "threads"', 'parse_mode = "forks"')))
    cfg = load_config(write(tmp_path, edited(template, 'parse_mode = "threads"', 'parse_mode = "processes"')))
    assert cfg.workers.parse_mode == "processes"
