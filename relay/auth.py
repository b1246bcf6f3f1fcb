"""Patient authentication (IMAP now, submission and webmail later): one place for the
credential check and its throttling.

- The login is the patient's address (`<INS>@patient.mssante.fr`, domain in any case)
  or the bare INS; the password is checked against its argon2id hash in a thread
  (argon2 is deliberately slow: it must not stall the event loop).
- Only active mailboxes log in: pending ones wait for activation, opposed and closed
  ones are refused (DESIGN.md §4 "Lifecycle").
- Throttling: failures are counted per account and per client address over a sliding
  window; past the limit every attempt fails at once, whatever the password, until the
  window slides. Each failure also waits a short delay (slows guessing on one session).
- The answer never says which of login or password was wrong, nor, by its timing,
  whether the INS has a mailbox (argon2 runs against a dummy hash otherwise).
- Logins that are not an INS of our domain are refused without an account key; their
  attempts still count against the client's address.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from dataclasses import dataclass, field

import structlog
from argon2 import PasswordHasher
from prometheus_client import Counter
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailbox_store.crypto import MasterKey
from mailbox_store.store import MailboxInfo, Store
from policy.addresses import split_address
from policy.ins import InsError, parse_ins
from policy.recipients import MailboxState

log = structlog.get_logger("relay.auth")
ATTEMPTS = Counter("mssante_auth_attempts_total", "Patient logins by result", ["result"])
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("no account has this password")


@dataclass(frozen=True)
class AuthResult:
    mailbox: MailboxInfo | None
    reason: str  # "ok", "bad_credentials", "throttled", "inactive"

    @property
    def ok(self) -> bool:
        return self.mailbox is not None


@dataclass
class Throttle:
    limit: int
    window: float
    _events: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._events.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, key: str, now: float) -> bool:
        return len(self._recent(key, now)) >= self.limit

    def forgive(self, key: str) -> None:
        """Take back the attempt counted for a login that succeeded."""
        q = self._events.get(key)
        if q:
            q.pop()

    def fail(self, key: str, now: float) -> None:
        self._recent(key, now).append(now)
        if len(self._events) > 100_000:  # bounded memory under a spray of names
            self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self.window}


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


class Authenticator:
    def __init__(self, store: Store, master: MasterKey, domain: str, per_account: int = 5,
                 per_ip: int = 20, window: float = 900.0, failure_delay: float = 1.0):
        self.store = store
        self.master = master
        self.domain = domain
        self.accounts = Throttle(per_account, window)
        self.addresses = Throttle(per_ip, window)
        self.failure_delay = failure_delay

    async def login(self, login: str, password: str, ip: str, protocol: str = "imap") -> AuthResult:
        now = time.monotonic()
        ins = login_to_ins(login, self.domain)
        ins_hash = self.master.pseudonym(ins) if ins else None
        ip_key = client_key(ip)
        if (ins and self.accounts.blocked(ins, now)) or self.addresses.blocked(ip_key, now):
            log.warning("auth.throttled", ins_hash=ins_hash, peer=ip)
            ATTEMPTS.labels("throttled").inc()
            return AuthResult(None, "throttled")
        # Count the attempt on the account before the slow check, so concurrent sessions
        # cannot try more passwords on it than the limit; a success takes it back. The
        # address counts failures only: many people may log in at once behind one NAT.
        if ins:
            self.accounts.fail(ins, now)
        found = await self.store.credentials(ins) if ins else None
        # Always run argon2, against a dummy hash when there is no account (or no
        # password yet): the answer's timing must not tell whether an INS has a mailbox.
        hashed = found[1] if found is not None and found[1] else _DUMMY_HASH
        verified = await asyncio.to_thread(_verify, hashed, password) and hashed is not _DUMMY_HASH
        if not verified:
            self.addresses.fail(ip_key, now)
            log.info("auth.failed", ins_hash=ins_hash, peer=ip)
            ATTEMPTS.labels("bad_credentials").inc()
            await asyncio.sleep(self.failure_delay)
            return AuthResult(None, "bad_credentials")
        assert found is not None and ins is not None
        self.accounts.forgive(ins)
        mailbox = found[0]
        if mailbox.state is not MailboxState.ACTIVE:
            log.info("auth.inactive", ins_hash=ins_hash, peer=ip, state=mailbox.state.value)
            ATTEMPTS.labels("inactive").inc()
            return AuthResult(None, "inactive")
        await self.store.record_login(mailbox.id, source=ip, protocol=protocol)
        log.info("auth.ok", ins_hash=ins_hash, peer=ip)
        ATTEMPTS.labels("ok").inc()
        return AuthResult(mailbox, "ok")


def client_key(ip: str) -> str:
    """The throttling key of a client address: IPv4 as is (also when mapped into IPv6),
    IPv6 by its /64, the smallest block one subscriber usually gets."""
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
