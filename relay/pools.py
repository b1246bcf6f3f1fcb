"""Named, bounded worker pools: the CPU-heavy steps of the daemon, off the event loop
and off asyncio's one shared default executor (issue 15 §2).

Why named pools: with one shared pool, a login spray (argon2, 64 MiB and ~50 ms each)
or one slow DKIM lookup queued every MX inspection behind it. Each kind of work now
has its own pool, sized in [workers]:

- `parse`: MIME inspection of a received message (attachments, XDM/CDA checks);
- `crypto`: AES-GCM sealing and opening of whole messages and documents (the store's
  executor, mailbox_store/store.py);
- `dkim`: RFC 6376 signing (relay/delivery/outgoing.py) and verification (DNS + RSA);
- password hashing keeps its own pool in relay/auth.py, sized by auth.hash_threads
  (it existed before this module; the webmail's password change uses it too).

A pool is a bound on concurrency, not on queue length: what waits for a thread waits
as a coroutine, and the number of such coroutines is bounded upstream (sessions per
address, bytes in flight: relay/smtp/budget.py).

Threads or processes for `parse` (issue 15 §3, "both cores"): see PARSE_CHOICE below.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# Measured with bench/compare_anchor.sh-style runs (bench/parse_pool.py), see the
# report of issue 15: filled in where the figures are.
PARSE_CHOICE = "threads"


def default_size(share: float, floor: int = 1, ceiling: int = 8) -> int:
    """A pool size from the machine's cores: `share` of them, within [floor, ceiling]."""
    return max(floor, min(ceiling, round((os.cpu_count() or 1) * share)))


@dataclass
class Pools:
    parse: Executor
    crypto: Executor
    dkim: Executor

    @classmethod
    def start(cls, parse: int, crypto: int, dkim: int) -> "Pools":
        return cls(parse=ThreadPoolExecutor(max_workers=parse, thread_name_prefix="parse"),
                   crypto=ThreadPoolExecutor(max_workers=crypto, thread_name_prefix="crypto"),
                   dkim=ThreadPoolExecutor(max_workers=dkim, thread_name_prefix="dkim"))

    def shutdown(self) -> None:
        """Queued work is dropped; running work ends on its own (its caller is gone)."""
        for pool in (self.parse, self.crypto, self.dkim):
            pool.shutdown(wait=False, cancel_futures=True)


async def run_in(pool: Executor | None, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in `pool` (None: asyncio's default executor, for code run without a
    daemon, e.g. the CLI and unit tests)."""
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
