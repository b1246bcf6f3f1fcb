"""Login throttling arithmetic (DESIGN.md §6 "Throttles protect the owner"): pure, stdlib
only; the caller passes the clock.

A *key* is what failures are charged to: an account seen from one source network, or a
source network alone (relay/auth/login.py builds both). The first `free` failures of a key cost
nothing (typos); after that the key's next attempt must wait an exponentially growing
delay after its last failure, capped, and a key quiet for `forget_after` starts again from
zero. There is no lock that anyone else can trigger: nothing here ever holds back a key
that has no failures of its own, so the owner logging in from another network is never
refused because of a stranger's guesses.

Concurrency: a key's attempts still in flight count as failures until they settle, so
fifty sessions cannot check fifty passwords on a budget of five. An attempt that would
only be admissible once in-flight ones settle is told `busy` (the caller waits for a
settle and asks again) rather than refused: a large NAT logging in many people at once is
slowed by one password check, not turned away.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    free: int  # failures answered without any delay
    first_delay: float  # seconds required after the first failure beyond `free`; doubles each time
    max_delay: float  # the doubling stops here
    forget_after: float  # a key without failure for this long starts from zero

    def delay(self, over: int) -> float:
        """Seconds an attempt must wait after the last failure when its key has `over`
        failures beyond the free ones (over >= 1); 0 otherwise."""
        if over <= 0:
            return 0.0
        return min(self.max_delay, self.first_delay * 2.0 ** min(over - 1, 60))


@dataclass(frozen=True)
class Admission:
    wait: float = 0.0  # > 0: refused; the key may try again after this many seconds
    busy: bool = False  # admissible only once an attempt in flight settles: ask again then

    @property
    def admitted(self) -> bool:
        return self.wait <= 0 and not self.busy


ADMITTED = Admission()


@dataclass
class Tally:
    failures: int = 0
    last: float = 0.0  # time of the last failure
    in_flight: int = 0


@dataclass
class Ledger:
    """The tallies of one kind of key, bounded to `max_keys` (the oldest-touched are
    dropped first, after any that have been forgotten anyway)."""

    budget: Budget
    max_keys: int = 100_000
    max_in_flight: int = 0  # > 0: a key never has more attempts in flight than this (0: no cap)
    _tallies: dict[str, Tally] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._tallies)

    def failures(self, key: str, now: float) -> int:
        t = self._live(key, now)
        return t.failures if t else 0

    def _live(self, key: str, now: float) -> Tally | None:
        t = self._tallies.get(key)
        if t is not None and t.in_flight == 0 and now - t.last >= self.budget.forget_after:
            del self._tallies[key]
            return None
        return t

    def admit(self, key: str, now: float) -> Admission:
        t = self._live(key, now)
        if t is None:
            return ADMITTED
        if t.failures >= self.budget.free:
            wait = t.last + self.budget.delay(t.failures - self.budget.free + 1) - now
            if wait > 0:
                return Admission(wait=wait)
            # the budget allows one more attempt, and only one: wait for those in flight
            return Admission(busy=True) if t.in_flight else ADMITTED
        if t.failures + t.in_flight >= self.budget.free or 0 < self.max_in_flight <= t.in_flight:
            return Admission(busy=True)
        return ADMITTED

    def begin(self, key: str, now: float) -> None:
        t = self._live(key, now)
        if t is None:
            t = self._tallies[key] = Tally(last=now)
            self._bound(now)
        t.in_flight += 1

    def end(self, key: str, now: float, failed: bool) -> None:
        """Settle one attempt begun on `key`."""
        t = self._tallies.get(key)
        if t is None:  # dropped by the bound meanwhile
            t = self._tallies[key] = Tally(last=now, in_flight=1)
        t.in_flight = max(0, t.in_flight - 1)
        if failed:
            t.failures += 1
            t.last = now
            # most recently touched last, so the bound drops idle keys first
            self._tallies[key] = self._tallies.pop(key)
        elif t.failures == 0 and t.in_flight == 0:
            del self._tallies[key]

    def merge(self, key: str, failures: int, last: float, now: float) -> None:
        """Take in failures of `key` counted elsewhere (other nodes, issue 14): the key
        has at least `failures`, the last at `last` (this ledger's clock). The larger
        count wins: the shared count already includes this ledger's own failures."""
        if failures <= 0 or now - last >= self.budget.forget_after:
            return
        t = self._live(key, now)
        if t is None:
            t = self._tallies[key] = Tally(last=last)
            self._bound(now)
        t.failures = max(t.failures, failures)
        t.last = max(t.last, last)

    def clear(self, key: str) -> None:
        """Forget the failures of `key` (its owner proved the password from there)."""
        t = self._tallies.get(key)
        if t is not None:
            if t.in_flight:
                t.failures = 0
            else:
                del self._tallies[key]

    def _bound(self, now: float) -> None:
        if len(self._tallies) <= self.max_keys:
            return
        for k in [k for k, t in self._tallies.items()
                  if t.in_flight == 0 and now - t.last >= self.budget.forget_after]:
            del self._tallies[k]
        # down to 90 %, so a spray of new keys pays this scan once per max_keys/10 keys
        excess = len(self._tallies) - self.max_keys * 9 // 10
        if excess > 0:
            for k in [k for k, t in self._tallies.items() if t.in_flight == 0][:excess]:
                del self._tallies[k]
