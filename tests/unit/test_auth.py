"""relay/auth/login.py: login names, source networks, and the throttle against a real store
(the clock is the test's, so a thousand guesses take no wall time)."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

import relay.auth.login as auth_module
from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.auth.login import UNRECORDED, Authenticator, client_key, login_to_ins
from relay.core.config import AuthConfig

INS = "279035121518989"
OWNER_IP, STRANGER_IP = "127.0.0.1", "127.0.0.2"
FAST = AuthConfig(failure_reply_delay=0)  # the real budgets, without the per-answer pause


def ins(n: int) -> str:
    """A well-formed INS (NIR key included) with no mailbox."""
    base = 1800175123000 + n
    return f"{base}{97 - base % 97:02d}"


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def cheap_dummy_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown INS are checked against a dummy hash of production cost (0.5 s here):
    a cheap one keeps these tests about counts, not argon2."""
    monkeypatch.setattr(auth_module, "_DUMMY_HASH", PasswordHasher(time_cost=1, memory_cost=8192).hash("x"))


@pytest.fixture
async def store(tmp_path: Path, store_url: str) -> AsyncIterator[Store]:
    s = await Store.open(store_url, MasterKey.generate(tmp_path / "k"))
    await s.create_mailbox(INS, MailboxState.ACTIVE, PasswordHasher(time_cost=1, memory_cost=8192).hash("right"))
    yield s
    await s.close()


def authenticator(store: Store, tmp_path: Path, clock: Clock, limits: AuthConfig = FAST) -> Authenticator:
    return Authenticator(store, MasterKey.load(tmp_path / "k"), "patient.mssante.fr", limits, clock=clock)


def test_login_names() -> None:
    assert login_to_ins(INS, "patient.mssante.fr") == INS
    assert login_to_ins(f"{INS}@PATIENT.mssante.fr", "patient.mssante.fr") == INS
    assert login_to_ins(f"{INS}@example.org", "patient.mssante.fr") is None
    assert login_to_ins("279035121518988", "patient.mssante.fr") is None  # bad key


def test_source_networks() -> None:
    assert client_key("127.0.0.7") == "127.0.0.7"  # IPv4: the address itself, not its /24
    assert client_key("127.0.0.7") != client_key("127.0.0.8")
    assert client_key("::ffff:127.0.0.7") == "127.0.0.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")


async def test_a_strangers_thousand_guesses_do_not_lock_the_owner_out(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    auth = authenticator(store, tmp_path, clock)
    results = []
    for i in range(1000):  # one guess a second for 1,000 s, from one address
        results.append(await auth.login(INS, f"guess{i}", STRANGER_IP))
        clock.now += 1
    # 5 free, then one after 1, 2, 4 ... 256, 512 s: the 10th delay would end after 1,023 s
    assert auth.password_checks == 14
    assert sum(r.reason == "throttled" for r in results) == 1000 - 14
    assert not any(r.ok for r in results)
    # even the right password from the guesser's address waits its turn...
    late = await auth.login(INS, "right", STRANGER_IP)
    assert late.reason == "throttled" and late.retry_after > 0
    # ...while the owner, from their own address, is not held back at all
    assert (await auth.login(f"{INS}@patient.mssante.fr", "right", OWNER_IP)).ok


async def test_twenty_concurrent_correct_logins_all_succeed(store: Store, tmp_path: Path) -> None:
    auth = authenticator(store, tmp_path, Clock())
    results = await asyncio.gather(*(auth.login(INS, "right", OWNER_IP) for _ in range(20)))
    assert [r.reason for r in results] == ["ok"] * 20
    assert auth.password_checks == 20
    assert len(auth._accounts) == 0  # the per-account locks are gone once nobody waits


async def test_fifty_concurrent_sessions_check_no_more_than_the_budget(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    auth = authenticator(store, tmp_path, clock)
    # fifty at once on one account: the five free failures, then nothing until 1 s later
    results = await asyncio.gather(*(auth.login(INS, f"g{i}", STRANGER_IP) for i in range(50)))
    assert auth.password_checks == 5
    assert sum(r.reason == "bad_credentials" for r in results) == 5
    # fifty at once on fifty accounts from another address: its twenty free failures
    results = await asyncio.gather(*(auth.login(ins(i), "guess", "127.0.0.3") for i in range(1, 51)))
    assert auth.password_checks == 5 + 20
    assert sum(r.reason == "throttled" for r in results) == 30
    clock.now += 1  # one more each, one at a time
    results = await asyncio.gather(*(auth.login(ins(i), "guess", "127.0.0.3") for i in range(51, 101)))
    assert auth.password_checks == 5 + 20 + 1


async def test_many_correct_logins_behind_one_address_wait_rather_than_fail(tmp_path: Path, store_url: str) -> None:
    store = await Store.open(store_url, MasterKey.generate(tmp_path / "k"))
    try:
        hashed = PasswordHasher(time_cost=1, memory_cost=8192).hash("right")
        for i in range(1, 101):
            await store.create_mailbox(ins(i), MailboxState.ACTIVE, hashed)
        auth = authenticator(store, tmp_path, Clock())
        # 100 patients behind one NAT at once: more than the address's 20 free failures
        # (and its 2 hashing threads) could be in flight, so they wait in line; none is refused
        results = await asyncio.gather(*(auth.login(ins(i), "right", "127.0.0.4") for i in range(1, 101)))
        assert [r.reason for r in results] == ["ok"] * 100
        assert not auth._lines and not auth._accounts and len(auth.sources) == 0
    finally:
        await store.close()


async def test_a_success_does_not_pay_back_the_networks_failures(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    auth = authenticator(store, tmp_path, clock)
    for i in range(1, 21):
        assert (await auth.login(ins(i), "guess", STRANGER_IP)).reason == "bad_credentials"
    clock.now += 1
    assert (await auth.login(INS, "right", STRANGER_IP)).ok  # the guesser's own account
    assert auth.sources.failures(client_key(STRANGER_IP), clock.now) == 20
    assert (await auth.login(ins(21), "guess", STRANGER_IP)).reason == "bad_credentials"
    assert (await auth.login(ins(22), "guess", STRANGER_IP)).reason == "throttled"


async def test_unknown_ins_costs_a_check_and_the_same_budget(store: Store, tmp_path: Path) -> None:
    auth = authenticator(store, tmp_path, Clock())
    for _ in range(5):
        assert (await auth.login(ins(7), "right", STRANGER_IP)).reason == "bad_credentials"
    assert auth.password_checks == 5  # argon2 ran against the dummy hash: no timing tells
    assert (await auth.login(ins(7), "right", STRANGER_IP)).reason == "throttled"
    assert (await auth.login("not-an-ins", "x", STRANGER_IP)).reason == "bad_credentials"


async def test_a_login_that_cannot_be_recorded_still_succeeds(store: Store, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    async def disk_full(*a: object, **kw: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(store, "record_login", disk_full)
    auth = authenticator(store, tmp_path, Clock())
    before = UNRECORDED._value.get()
    with capture_logs() as logs:
        result = await auth.login(INS, "right", OWNER_IP, "submission")
    assert result.ok
    assert UNRECORDED._value.get() == before + 1
    event = next(e for e in logs if e["event"] == "auth.login_unrecorded")
    assert event["error"] == "OperationalError" and event["protocol"] == "submission"
    assert INS not in repr(logs) and "disk is full" not in repr(logs)


async def test_an_unreadable_store_answers_unavailable_and_charges_nothing(store: Store, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*a: object) -> None:
        raise OperationalError("SELECT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "credentials", broken)
    auth = authenticator(store, tmp_path, Clock())
    for _ in range(10):
        assert (await auth.login(INS, "right", OWNER_IP)).reason == "unavailable"
    assert auth.password_checks == 0 and auth.sources.failures(OWNER_IP, 0) == 0


async def test_passwords_are_checked_in_their_own_pool_and_a_dropped_session_pays(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release, threads = threading.Event(), []

    def slow_verify(hashed: str, password: str) -> bool:
        threads.append(threading.current_thread().name)
        release.wait(30)
        return False

    monkeypatch.setattr(auth_module, "_verify", slow_verify)
    auth = authenticator(store, tmp_path, Clock())
    task = asyncio.create_task(auth.login(INS, "guess", STRANGER_IP))
    while not threads:
        await asyncio.sleep(0.01)
    task.cancel()  # the client hangs up while argon2 runs
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert threads[0].startswith("argon2")
    assert auth.pairs.failures(f"{INS} {STRANGER_IP}", 0) == 1
    assert auth.sources.failures(STRANGER_IP, 0) == 1
    auth.close()


async def test_a_spray_of_refusals_is_logged_once_per_network_and_period(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    auth = authenticator(store, tmp_path, clock)
    with capture_logs() as logs:
        for i in range(300):
            await auth.login(INS, f"g{i}", STRANGER_IP)
        clock.now += auth_module.LOG_EVERY
        assert (await auth.login(INS, "g", STRANGER_IP)).reason == "bad_credentials"  # its delay is over
        assert (await auth.login(INS, "g", STRANGER_IP)).reason == "throttled"
    # 5 checked, 295 refused: one event, then one standing for the 294 unlogged and itself
    throttled = [e for e in logs if e["event"] == "auth.throttled"]
    assert [e["refused"] for e in throttled] == [1, 295]


async def test_a_refused_answer_pauses_by_failure_reply_delay(store: Store, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong password and a throttled attempt are each answered only after
    auth.failure_reply_delay (1 s by default): one session cannot guess faster. The
    integration instances set it to 0, so this is where the pause is checked."""
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recording(delay: float, *args: object) -> None:
        pauses.append(delay)
        await real_sleep(0)

    limits = AuthConfig(failure_reply_delay=1.0, failures_per_account_source=1, first_delay=600, max_delay=600)
    assert AuthConfig().failure_reply_delay == 1.0
    auth = authenticator(store, tmp_path, Clock(), limits)
    monkeypatch.setattr(auth_module.asyncio, "sleep", recording)
    assert (await auth.login(INS, "wrong", "192.0.2.1")).reason == "bad_credentials"  # the free failure
    assert pauses.count(1.0) == 1
    assert (await auth.login(INS, "right", "192.0.2.1")).reason == "throttled"  # waits first_delay now
    assert pauses.count(1.0) == 2
    ok = await authenticator(store, tmp_path, Clock(), limits).login(INS, "right", "198.51.100.7")
    assert ok.reason == "ok" and pauses.count(1.0) == 2  # a success does not pause
