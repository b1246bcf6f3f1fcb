"""relay/auth.py: login names, throttling keys, and the throttle under concurrency."""
from __future__ import annotations

import asyncio
from pathlib import Path

from argon2 import PasswordHasher

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store, sqlite_url
from policy.recipients import MailboxState
from relay.auth import Authenticator, Throttle, client_key, login_to_ins

INS = "279035121518989"


def test_login_names() -> None:
    assert login_to_ins(INS, "patient.mssante.fr") == INS
    assert login_to_ins(f"{INS}@PATIENT.mssante.fr", "patient.mssante.fr") == INS
    assert login_to_ins(f"{INS}@example.org", "patient.mssante.fr") is None
    assert login_to_ins("279035121518988", "patient.mssante.fr") is None  # bad key


def test_client_keys() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")


def test_throttle_window() -> None:
    t = Throttle(limit=2, window=10)
    t.fail("k", 0)
    t.fail("k", 1)
    assert t.blocked("k", 5) and not t.blocked("k", 10.5)
    t.forgive("k")
    assert not t.blocked("k", 5)


async def test_concurrent_guesses_cannot_exceed_the_limit(tmp_path: Path) -> None:
    store = await Store.open(sqlite_url(tmp_path / "a.db"), MasterKey.generate(tmp_path / "k"))
    try:
        await store.create_mailbox(INS, MailboxState.ACTIVE,
                                   PasswordHasher(time_cost=1, memory_cost=8192).hash("right"))
        auth = Authenticator(store, MasterKey.load(tmp_path / "k"), "patient.mssante.fr", per_account=5,
                             failure_delay=0)
        results = await asyncio.gather(*(auth.login(INS, f"guess{i}", "192.0.2.1") for i in range(20)))
        checked = [r for r in results if r.reason == "bad_credentials"]
        assert len(checked) <= 5 and all(r.reason in ("bad_credentials", "throttled") for r in results)
        assert (await auth.login(INS, "right", "192.0.2.9")).reason == "throttled"
    finally:
        await store.close()


async def test_right_password_logs_in_and_is_not_counted(tmp_path: Path) -> None:
    store = await Store.open(sqlite_url(tmp_path / "a.db"), MasterKey.generate(tmp_path / "k"))
    try:
        await store.create_mailbox(INS, MailboxState.ACTIVE,
                                   PasswordHasher(time_cost=1, memory_cost=8192).hash("right"))
        auth = Authenticator(store, MasterKey.load(tmp_path / "k"), "patient.mssante.fr", per_account=2,
                             failure_delay=0)
        for _ in range(5):
            assert (await auth.login(f"{INS}@patient.mssante.fr", "right", "192.0.2.1")).ok
        assert (await auth.login("160017512300140", "right", "192.0.2.1")).reason == "bad_credentials"
    finally:
        await store.close()
