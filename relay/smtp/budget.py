"""One bound on the message bytes all SMTP sessions hold at once (MX and submission).

Each session was bounded (SIZE, sessions per address), but nothing bounded them
together: 200 sessions sending 25 MB each could hold 5 GB. Now a DATA first reserves
its message's size from one budget:

- the size it declared with MAIL ... SIZE= (RFC 1870 §3: the client's estimate), else
  the largest message the server accepts; never less than one read chunk;
- a reservation that does not fit waits, first come first served, up to `wait`
  seconds, then the DATA is answered 452 4.3.1 (RFC 3463 X.3.1, "mail system full";
  RFC 5321 §4.3.2 lists 452 among DATA's replies) before any byte is sent;
- a message that outgrows its declared size takes more budget only if it is free at
  once: waiting in the middle of DATA while holding a part could deadlock every
  session against each other, so it is read to its end and refused with 452 instead.

The reservation is released when the transaction's handler has answered (the
message is then committed or refused, and its bytes are dropped).
"""
from __future__ import annotations

from relay.core.bytebudget import IN_FLIGHT, ByteBudget  # noqa: F401 (the SMTP fronts' names)


def declared_size(mail_options: list[str], largest: int) -> int:
    """The SIZE= a client declared at MAIL (RFC 1870 §3), within [0, largest]; largest
    when it declared none (aiosmtpd already refused a SIZE over the limit)."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return min(int(value), largest)
    return largest


class Reservation:
    """The bytes one DATA holds: the reserved size, grown only with budget free at
    once (module note). `fits(n)` says whether n bytes may be kept."""

    def __init__(self, budget: ByteBudget, reserved: int):
        self.budget = budget
        self.reserved = reserved

    def fits(self, size: int) -> bool:
        if size <= self.reserved:
            return True
        more = max(size - self.reserved, 65536)
        if not self.budget.try_grow(more):
            return False
        self.reserved += more
        return True

    def release(self) -> None:
        self.budget.release(self.reserved)
        self.reserved = 0


async def reserve(budget: ByteBudget, mail_options: list[str], largest: int, wait: float) -> Reservation | None:
    """A new DATA's reservation (one read chunk more than the message: data.py holds
    that much beyond it), or None after `wait` seconds without budget."""
    n = min(declared_size(mail_options, largest) + 65536, budget.limit)
    return Reservation(budget, n) if await budget.acquire(n, wait) else None
