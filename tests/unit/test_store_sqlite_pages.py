"""mailbox_store/store.py SQLITE_PAGE_SIZE: a new SQLite store is created with larger
pages (a 500 KB message: fewer WAL frames and system calls); a store created before
keeps its own page size, and large messages go in and come back out of both."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from mailbox_store.crypto import MasterKey
from mailbox_store.store import SQLITE_PAGE_SIZE, Store, sqlite_url
from policy.recipients import MailboxState

INS = "279035121518989"


def _page_size(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()


async def _round_trip(path: Path) -> None:
    store = await Store.open(sqlite_url(path), MasterKey(os.urandom(32)))
    try:
        mbox = await store.create_mailbox(INS, state=MailboxState.ACTIVE)
        raw = b"Subject: gros\r\n\r\n" + os.urandom(300_000).hex().encode() + b"\r\n"  # 600 KB: overflow pages
        delivered = await store.deliver([mbox], raw)
        assert await store.fetch_raw(INS, "INBOX", delivered[0].uid) == raw
    finally:
        await store.close()


async def test_a_new_store_has_the_larger_pages(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    await _round_trip(path)
    assert SQLITE_PAGE_SIZE > 4096 and _page_size(path) == SQLITE_PAGE_SIZE


@pytest.mark.parametrize("old_size", [1024, 4096])
async def test_a_store_created_before_keeps_its_page_size(tmp_path: Path, old_size: int) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)  # as an older release left it: WAL, its page size fixed
    con.execute(f"PRAGMA page_size={old_size}")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE before_upgrade (x)")
    con.close()
    await _round_trip(path)
    assert _page_size(path) == old_size
