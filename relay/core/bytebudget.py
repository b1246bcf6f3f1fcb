"""One bound on bytes many sessions hold at once, granted first come, first served
(the SMTP DATA transfers of relay/smtp/budget.py; lives below the fronts because the
daemon's runtime owns the one instance, relay/core/runtime.py)."""
from __future__ import annotations

import asyncio
import collections

from prometheus_client import Gauge

IN_FLIGHT = Gauge("mssante_smtp_bytes_in_flight", "Message bytes reserved by SMTP DATA transfers")


class ByteBudget:
    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _grant(self) -> None:
        # first come, first served: a large reservation at the head is not overtaken
        # by small ones forever
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self.used + n > self.limit:
                return
            self._waiters.popleft()
            self.used += n
            IN_FLIGHT.set(self.used)
            fut.set_result(None)

    async def acquire(self, n: int, wait: float) -> bool:
        """Reserve n bytes (capped to the limit, so one message can always pass alone);
        False after `wait` seconds without them."""
        n = min(n, self.limit)
        if not self._waiters and self.used + n <= self.limit:
            self.used += n
            IN_FLIGHT.set(self.used)
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait)
            return True
        except TimeoutError:
            if fut.done() and not fut.cancelled():  # granted at the very last moment
                return True
            fut.cancel()
            self._grant()  # the next in line may fit now that this one left
            return False
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)
            else:
                fut.cancel()
                self._grant()
            raise

    def try_grow(self, n: int) -> bool:
        """n more bytes for a reservation already held, only if free now (no waiting)."""
        if self._waiters or self.used + n > self.limit:
            return False
        self.used += n
        IN_FLIGHT.set(self.used)
        return True

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)
        IN_FLIGHT.set(self.used)
        self._grant()
