"""Patient authentication (IMAP, submission; webmail later): one place for the credential
check and its throttling.

Implementation notes (invariants a newcomer must not break):
- The login is the patient's address (`<INS>@patient.mssante.fr`, domain in any case)
  or the bare INS; the password is checked against its argon2id hash in the
  authenticator's own thread pool (argon2 is deliberately slow: it must not stall the
  event loop, and a login spray must not starve the default pool that the store and
  parsing use; DESIGN.md §6 "hashing in its own").
- Only active mailboxes log in: pending ones wait for activation, opposed and closed
  ones are refused (DESIGN.md §4 "Lifecycle").
- Throttling protects the owner (DESIGN.md §6, issue 10 §1): failures are charged to
  (account, source network) and to the source network (policy/throttle.py holds the
  arithmetic). Past its free failures a key waits an exponentially growing delay; no
  key is ever held back by another key's failures, so a stranger's guesses never lock
  the owner out from elsewhere, and a success from a network never pays back that
  network's failures (a patient with an account of their own could otherwise launder
  a spray with their own logins).
- Source network: an IPv4 address as is (/32), IPv6 by its /64. A /24 would charge a
  stranger's guesses to everyone in the same ISP pool or carrier-grade NAT block; one
  IPv4 address is what an attacker pays for, while an IPv6 subscriber gets at least a
  /64, which costs nothing to walk through address by address.
- Concurrency: the attempts on one account are admitted one at a time (a lock per
  account, held only while the password is checked, never across the failure delay),
  and a source's attempts in flight count as failures until they settle, so fifty
  sessions cannot check more passwords than the budgets allow, and twenty simultaneous
  correct logins on one account all succeed (each waits its turn, none is refused).
  One network never has more checks in flight than the hashing pool has threads, so
  a spray's checks queue behind each other and not ahead of the owner's.
- A refused attempt (over budget) checks no password and is answered after the same
  pause as a failure; refusals are logged once per network per LOG_EVERY seconds with
  their count, so a spray cannot flood the log.
- The answer never says which of login or password was wrong, nor, by its timing,
  whether the INS has a mailbox (argon2 runs against a dummy hash otherwise), and the
  budgets are charged to any well-formed INS, with a mailbox or not.
- Logins that are not an INS of our domain have no account key; their failures are
  still charged to the source network.
- A login whose audit record cannot be written (disk full, store failing) still
  succeeds: the password was right, and the patient must be able to read their mail
  while the operator frees space (issue 10 §6 "keeps reading possible"). The access is
  then traced by the `auth.login_unrecorded` event (ins_hash, peer, protocol) and the
  `mssante_auth_unrecorded_logins_total` counter, as reads already are when their audit
  write fails (relay/imap/server.py `audit.failed`). A store that cannot even be read
  answers "unavailable", a temporary refusal, never an exception.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from prometheus_client import Counter

from mailbox_store.crypto import MasterKey
from mailbox_store.store import MailboxInfo, Store
from policy.addresses import split_address
from policy.ins import InsError, parse_ins
from policy.recipients import MailboxState
from policy.throttle import Admission, Budget, Ledger
from relay.core.config import AuthConfig
from relay.auth.shared_throttle import SharedFailures

log = structlog.get_logger("relay.auth")
ATTEMPTS = Counter("mssante_auth_attempts_total", "Patient logins by result", ["result"])
PASSWORD_CHECKS = Counter("mssante_auth_password_checks_total", "argon2 verifications performed")
UNRECORDED = Counter("mssante_auth_unrecorded_logins_total",
                     "Successful logins whose audit record could not be written")
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("no account has this password")
LOG_EVERY = 10.0  # seconds between two auth.throttled events of one source network
BUSY_WAIT = 60.0  # longest wait in line behind a network's attempts in flight


@dataclass(frozen=True)
class AuthResult:
    mailbox: MailboxInfo | None
    reason: str  # "ok", "bad_credentials", "throttled", "inactive", "unavailable"
    retry_after: int = 0  # throttled: whole seconds before this source may try again

    @property
    def ok(self) -> bool:
        return self.mailbox is not None


def login_to_ins(login: str, domain: str) -> str | None:
    """The INS named by a login: "279035121518989" or "279035121518989@patient.mssante.fr"."""
    if "@" in login:
        addr = split_address(login)
        if addr is None or addr.domain != domain.lower():
            return None
        login = addr.local
    try:
        return parse_ins(login).value
    except InsError:
        return None


class _KeyedLocks:
    """One asyncio.Lock per key, existing only while someone holds or waits for it:
    memory bounded by the attempts in flight, whatever the number of accounts."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


class Authenticator:
    def __init__(self, store: Store, master: MasterKey, domain: str, limits: AuthConfig = AuthConfig(),
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.master = master
        self.domain = domain
        self.clock = clock

        def budget(free: int) -> Budget:
            return Budget(free, limits.first_delay, limits.max_delay, limits.forget_after)

        self.pairs = Ledger(budget(limits.failures_per_account_source))  # "INS source" keys
        # One network never has more checks in flight than the hashing pool has threads,
        # so a spray's checks queue behind each other, not ahead of the owner's, who
        # waits one round of the pool at most (bench/auth_throttle.py measured 10 s
        # without this cap, its 20 free guesses all queued ahead).
        self.sources = Ledger(budget(limits.failures_per_source), max_in_flight=limits.hash_threads)
        self.failure_delay = limits.failure_reply_delay
        self.shared = SharedFailures(store, limits.forget_after, clock)  # several nodes (shared_throttle.py)
        self.password_checks = 0  # argon2 verifications run (tests, bench)
        self._accounts = _KeyedLocks()
        self._lines: dict[str, collections.deque[asyncio.Future[None]]] = {}  # waiting for a settle
        self._logged: dict[str, tuple[float, int]] = {}  # source -> (last event, refusals since)
        self._pool = ThreadPoolExecutor(max_workers=limits.hash_threads, thread_name_prefix="argon2")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def hash_password(self, password: str) -> str:
        """A new argon2id hash, in the password pool: hashing costs what a check costs,
        and must queue with the checks, never in the pools the MX uses (issue 15 §2)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, _HASHER.hash, password)

    async def login(self, login: str, password: str, ip: str, protocol: str = "imap") -> AuthResult:
        ins = login_to_ins(login, self.domain)
        ins_hash = self.master.pseudonym(ins) if ins else None
        source = client_key(ip)
        pair = f"{ins} {source}" if ins else None
        await self.shared.pull(self.pairs, self.sources, pair, source)
        # A source over budget is refused before it queues on the account: its attempts
        # never make the owner wait behind them.
        early = self._refusal(pair, source, self.clock())
        if early is not None:
            return await self._throttled(early, ins_hash, ip, source)
        async with self._accounts.hold(ins) if ins else contextlib.nullcontext():
            admission = await self._admit(pair, source)  # again: others went first
            if admission.admitted:
                outcome = await self._check(ins, password, pair, source, ins_hash, ip)
        if not admission.admitted:
            return await self._throttled(admission, ins_hash, ip, source)
        if outcome is None:
            return AuthResult(None, "unavailable")
        found, verified = outcome
        if not verified:
            await self.shared.push(pair, source)
            log.info("auth.failed", ins_hash=ins_hash, peer=ip)
            ATTEMPTS.labels("bad_credentials").inc()
            await asyncio.sleep(self.failure_delay)  # one session cannot guess faster
            return AuthResult(None, "bad_credentials")
        assert found is not None
        await self.shared.clear(pair)
        mailbox = found[0]
        if mailbox.state is not MailboxState.ACTIVE:
            log.info("auth.inactive", ins_hash=ins_hash, peer=ip, state=mailbox.state.value)
            ATTEMPTS.labels("inactive").inc()
            return AuthResult(None, "inactive")
        try:
            await self.store.record_login(mailbox.id, source=ip, protocol=protocol)
        except Exception as e:  # disk full, store closing: see the module notes
            log.error("auth.login_unrecorded", ins_hash=ins_hash, peer=ip, protocol=protocol,
                      error=type(e).__name__)
            UNRECORDED.inc()
        log.info("auth.ok", ins_hash=ins_hash, peer=ip)
        ATTEMPTS.labels("ok").inc()
        return AuthResult(mailbox, "ok")

    async def _check(self, ins: str | None, password: str, pair: str | None, source: str,
                     ins_hash: str | None, ip: str) -> tuple[tuple[MailboxInfo, str | None] | None, bool] | None:
        """The password check of an admitted attempt (under the account's lock): the
        account and whether the password is its own; None when the store cannot be read."""
        now = self.clock()
        self.sources.begin(source, now)
        if pair:
            self.pairs.begin(pair, now)
        checked = verified = False
        try:
            found = await self.store.credentials(ins) if ins else None
            # Always run argon2, against a dummy hash when there is no account (or no
            # password yet): the answer's timing must not tell whether an INS has a mailbox.
            hashed = found[1] if found is not None and found[1] else _DUMMY_HASH
            checked = True  # from here a dropped session still pays for its guess
            self.password_checks += 1
            PASSWORD_CHECKS.inc()
            verified = await asyncio.get_running_loop().run_in_executor(
                self._pool, _verify, hashed, password) and hashed is not _DUMMY_HASH
        except Exception as e:  # the store cannot be read: no guess was checked
            log.error("auth.unavailable", ins_hash=ins_hash, peer=ip, error=type(e).__name__)
            ATTEMPTS.labels("unavailable").inc()
            return None
        finally:
            self._settle(pair, source, checked, verified)
        return found, verified

    def _refusal(self, pair: str | None, source: str, now: float) -> Admission | None:
        for ledger, key in ((self.pairs, pair), (self.sources, source)):
            if key is not None:
                a = ledger.admit(key, now)
                if a.wait > 0:
                    return a
        return None

    async def _admit(self, pair: str | None, source: str) -> Admission:
        """Admission on both keys; while the only obstacle is the source's attempts in
        flight, wait in line for one of them to settle and ask again. Each settle wakes
        one waiter (first come, first served), and a waiter that is refused or leaves
        wakes the next: a thousand waiters cost a thousand wake-ups, not a million."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_WAIT
        woken = False
        while True:
            now = self.clock()
            refused = self._refusal(pair, source, now)
            a = self.sources.admit(source, now)
            b = self.pairs.admit(pair, now) if pair else a
            if refused is not None or not (a.busy or b.busy):
                if refused is not None and woken:
                    self._wake_one(source)  # the turn we were given goes to the next in line
                return refused or a
            if loop.time() >= deadline:
                if woken:
                    self._wake_one(source)
                return Admission(wait=1.0)
            turn: asyncio.Future[None] = loop.create_future()
            line = self._lines.setdefault(source, collections.deque())
            if woken:
                line.appendleft(turn)  # still busy: back to the head of the line
            else:
                line.append(turn)
            try:
                await asyncio.wait_for(asyncio.shield(turn), deadline - loop.time())
                woken = True
            except asyncio.TimeoutError:
                self._leave(turn, source)
                woken = False
            except asyncio.CancelledError:  # the session went away
                self._leave(turn, source)
                raise
            finally:
                if turn in line:
                    line.remove(turn)
                if not line:
                    self._lines.pop(source, None)

    def _leave(self, turn: asyncio.Future[None], source: str) -> None:
        if turn.done() and not turn.cancelled():
            self._wake_one(source)  # woken just as we left: pass it on
        turn.cancel()

    def _wake_one(self, source: str) -> None:
        line = self._lines.get(source)
        while line:
            turn = line.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    def _settle(self, pair: str | None, source: str, checked: bool, verified: bool) -> None:
        now = self.clock()
        failed = checked and not verified
        self.sources.end(source, now, failed)
        if pair:
            self.pairs.end(pair, now, failed)
            if verified:
                self.pairs.clear(pair)  # the owner proved the password from there
        self._wake_one(source)

    async def _throttled(self, admission: Admission, ins_hash: str | None, ip: str, source: str) -> AuthResult:
        retry = max(1, math.ceil(admission.wait))
        ATTEMPTS.labels("throttled").inc()
        # One event per source network and LOG_EVERY seconds, with the refusals it stands
        # for: a spray of 1,000 refusals a second must not become 1,000 log lines.
        now = self.clock()
        logged = self._logged.get(source)
        if logged is None or now - logged[0] >= LOG_EVERY:
            if len(self._logged) >= 10_000:
                self._logged.clear()
            log.info("auth.throttled", ins_hash=ins_hash, peer=ip, retry_after=retry,
                     refused=1 + (logged[1] if logged else 0))
            self._logged[source] = (now, 0)
        else:
            self._logged[source] = (logged[0], logged[1] + 1)
        # a refusal waits like a failure: a session hammering a closed door gets one
        # answer a second, not a thousand
        await asyncio.sleep(self.failure_delay)
        return AuthResult(None, "throttled", retry)


def client_key(ip: str) -> str:
    """The source network of a client address: IPv4 as is (also when mapped into IPv6),
    IPv6 by its /64 (see the module notes)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
