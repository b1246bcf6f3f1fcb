"""The daemon's event loop: uvloop's (libuv, written in Cython) instead of asyncio's
pure-Python one, for `serve` only; the CLI's short commands keep asyncio's.

Why (issue 12 §3): under imaptest's stress most of the event loop's own time was the
transport machinery around each read and write (asyncio's selector loop, its SSL
protocol and its buffers, all Python), not IMAP. Measured with
bench/imap_cpu_per_op.sh (imaptest's stress, LOGOUT=0, 10 clients, 20 s; two rounds
alternated in one sitting, 2026-12-06, load 3-5): the daemon's CPU per operation was
1.166 and 1.189 ms on asyncio's loop against 0.953 and 1.034 ms on uvloop's, and
992 and 965 operations/s against 1,193 and 1,098 (Dovecot in the same runs: 4,349,
3,994 and 4,135, 3,237). The code does not depend on which loop runs it: only
asyncio's public API is used (streams, start_tls, run_in_executor, signal handlers).
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on a uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
