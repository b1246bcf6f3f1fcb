"""Reads run whole in a worker thread on a synchronous connection (the webmail's hot
reads: mailbox_store/pages.py, thread.py).

Why: through the async driver every statement costs several hops between the event
loop and the driver's thread (cursor, execute, fetch, close, and BEGIN and ROLLBACK per
connection), each a GIL hand-over; a webmail page of five statements spent more of
the loop's time in those hops than in SQLite (measured with py-spy under
bench/web_load.py). A function given to `Reader.run` does all its statements in one
hop, the way the writer applies a batch (writer.py). The pool is small and bounded:
requests beyond it wait their turn, they do not open connections.

Two lanes: `run` for reads that open messages (a 25 MB blob decrypted in the thread),
`run_light` for the small indexed reads every page makes (who is logged in, a
conversation's members, the reply rules). Under bench/web_load.py the Messagerie list,
whose only read is the session's identity, waited in one queue behind the downloads'
and conversations' message reads: its latency was their queue's, not its own. The
light lane has its own thread and connection, so a list page waits only for reads as
small as its own.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine

R = TypeVar("R")
READ_THREADS = 4
LIGHT_THREADS = 1
READ_CONNECTIONS = READ_THREADS + LIGHT_THREADS  # the engine's pool: one per thread


class Reader:
    def __init__(self, engine: Engine, threads: int = READ_THREADS, light_threads: int = LIGHT_THREADS):
        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store-reader")
        self._light = ThreadPoolExecutor(max_workers=light_threads, thread_name_prefix="store-reader-light")

    async def run(self, fn: Callable[[Connection], R]) -> R:
        """fn(conn) in a worker thread, inside one read transaction (one snapshot)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn)

    async def run_light(self, fn: Callable[[Connection], R]) -> R:
        """Like run, for a read of a few indexed rows that opens no message: it never
        queues behind the message reads of `run`."""
        return await asyncio.get_running_loop().run_in_executor(self._light, self._call, fn)

    def _call(self, fn: Callable[[Connection], R]) -> R:
        with self._engine.connect() as conn:
            return fn(conn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._light.shutdown(wait=True)
        self._engine.dispose()
