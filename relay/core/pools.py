"""Named, bounded worker pools: the CPU-heavy steps of the daemon, off the event loop
and off asyncio's one shared default executor (issue 15 §2).

Why named pools: with one shared pool, a login spray (argon2, 64 MiB and ~50 ms each)
or one slow DKIM lookup queued every MX inspection behind it. Each kind of work now
has its own pool, sized in [workers]:

- `parse`: MIME inspection of a received message (attachments, XDM/CDA checks);
- `crypto`: AES-GCM sealing and opening of whole messages and documents (the store's
  executor, mailbox_store/store.py);
- `dkim`: RFC 6376 signing (relay/delivery/outgoing.py) and verification (DNS + RSA);
- password hashing keeps its own pool in relay/auth/login.py, sized by auth.hash_threads
  (it existed before this module; the webmail's password change uses it too).

A pool is a bound on concurrency, not on queue length: what waits for a thread waits
as a coroutine, and the number of such coroutines is bounded upstream (sessions per
address, bytes in flight: relay/smtp/budget.py).

Threads or processes for `parse` (issue 15 §3, "both cores"): threads by default,
processes as `[workers] parse_mode = "processes"`. Measured with bench/compare_anchor.sh
(PARSE_MODES="threads processes", 2 runs each, C=16, the anchor in the same run,
2026-12-05 21:51 UTC, 2 cores, load average 8-12 from other jobs on the machine):

    kind            anchor e2e   threads          processes
    10 KB           229.6 msg/s  196.4 (0.86x)    125.2 (0.55x), p99 236 vs 564 ms
    500 KB + PDF     26.0 msg/s   23.4 (0.90x)     22.4 (0.86x)

Processes lose: every message crosses a pipe twice (pickled in, the filing with its
documents pickled back), and the second core is not idle to win it back. They stay an
option, measured again on an idle machine before becoming the default.

Measured again once the MX's own CPU per message had halved (bench/smtp_inbound.py,
two daemons side by side under the same load, 2026-12-06, load 11-19): 10 KB threads
79.9 / 58.3 msg/s, processes 80.8 / 57.1; 500 KB + PDF threads 8.4 / 7.6, processes
9.5 / 7.1. No difference shows, so threads stay: one process, nothing pickled. In process mode
the worker is a top-level function of plain data (relay/inbound/pipeline.py) and a
worker that dies gives ParseWorkerLost, answered 451 4.3.0: never a lost message, never
a 250 for one that was not stored.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("relay.pools")
T = TypeVar("T")

# With threads, a message up to this size is inspected on the event loop: a thread hop
# costs more than parsing 10 KB, and the GIL runs one parse at a time anyway.
INSPECT_INLINE_MAX = 256 * 1024
PARSE_MODES = ("threads", "processes")


class ParseWorkerLost(Exception):
    """A parse worker process died during the call (killed, out of memory): the
    message was not inspected; the MX answers 451 and the pool is replaced."""


def default_size(share: float, floor: int = 1, ceiling: int = 8) -> int:
    """A pool size from the machine's cores: `share` of them, within [floor, ceiling]."""
    return max(floor, min(ceiling, round((os.cpu_count() or 1) * share)))


def _process_pool(size: int) -> ProcessPoolExecutor:
    # spawn, not fork: the daemon has threads (the writer, aiosqlite) whose locks a
    # forked child would inherit held
    return ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"))


@dataclass
class Pools:
    parse: Executor
    crypto: Executor
    dkim: Executor
    parse_mode: str = "threads"
    parse_size: int = 1

    @classmethod
    def start(cls, parse: int, crypto: int, dkim: int, parse_mode: str = "threads") -> Pools:
        pool: Executor = (_process_pool(parse) if parse_mode == "processes"
                          else ThreadPoolExecutor(max_workers=parse, thread_name_prefix="parse"))
        return cls(parse=pool, crypto=ThreadPoolExecutor(max_workers=crypto, thread_name_prefix="crypto"),
                   dkim=ThreadPoolExecutor(max_workers=dkim, thread_name_prefix="dkim"),
                   parse_mode=parse_mode, parse_size=parse)

    async def inspect(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """The parse step of a message of `size` bytes. With processes, `fn` must be a
        top-level function of plain, picklable data (it runs in another interpreter);
        ParseWorkerLost when its worker died, and the pool is replaced for the next."""
        if self.parse_mode == "threads":
            if size <= INSPECT_INLINE_MAX:
                return fn(*args)
            return await run_in(self.parse, fn, *args)
        pool = self.parse
        try:
            return await run_in(pool, fn, *args)
        except BrokenProcessPool:
            if self.parse is pool:  # the first caller to see it replaces it
                log.error("pools.parse_worker_lost", replaced=True)
                self.parse = _process_pool(self.parse_size)
                pool.shutdown(wait=False, cancel_futures=True)
            raise ParseWorkerLost("a parse worker process died") from None

    def shutdown(self) -> None:
        """Queued work is dropped; running work ends on its own (its caller is gone)."""
        for pool in (self.parse, self.crypto, self.dkim):
            pool.shutdown(wait=False, cancel_futures=True)


async def run_in(pool: Executor | None, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in `pool` (None: asyncio's default executor, for code run without a
    daemon, e.g. the CLI and unit tests)."""
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
