"""Bytes of IMAP literals being received, bounded per account and for the whole daemon
(DESIGN.md §6 "bytes in flight bounded per session, per account and globally").

A literal's announced size is reserved when its "{n}" arrives, before the server says
"+" (or, for LITERAL+, before it reads the bytes), and given back when the command has
been answered. An APPEND flood thus meets a tagged NO instead of the daemon's memory or
disk: 50 sessions announcing 20 MB each reserve what the bounds allow, no more.
"""
from __future__ import annotations

from collections.abc import Hashable

from prometheus_client import Gauge

IN_FLIGHT = Gauge("mssante_imap_literal_bytes_in_flight", "Bytes of IMAP literals being received")


class Reservation:
    def __init__(self, budget: "LiteralBudget", account: Hashable, size: int) -> None:
        self._budget = budget
        self.account = account
        self.size = size
        self._held = True

    def release(self) -> None:
        """Give the bytes back (once; later calls do nothing)."""
        if self._held:
            self._held = False
            self._budget._give_back(self.account, self.size)


class LiteralBudget:
    def __init__(self, per_account: int, total: int) -> None:
        self.per_account = per_account
        self.total = total
        self.in_flight = 0
        self._accounts: dict[Hashable, int] = {}

    def reserve(self, account: Hashable, size: int) -> Reservation | None:
        """Reserve size bytes for the account; None when either bound would be passed."""
        held = self._accounts.get(account, 0)
        if held + size > self.per_account or self.in_flight + size > self.total:
            return None
        self._accounts[account] = held + size
        self.in_flight += size
        IN_FLIGHT.set(self.in_flight)
        return Reservation(self, account, size)

    def held(self, account: Hashable) -> int:
        return self._accounts.get(account, 0)

    def _give_back(self, account: Hashable, size: int) -> None:
        left = self._accounts.get(account, 0) - size
        if left > 0:
            self._accounts[account] = left
        else:
            self._accounts.pop(account, None)  # nothing kept for accounts with nothing in flight
        self.in_flight -= size
        IN_FLIGHT.set(self.in_flight)
