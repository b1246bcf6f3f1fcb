"""Reads run whole in a worker thread on a synchronous connection (the webmail's hot
reads: mailbox_store/pages.py, thread.py; IMAP's: mailbox_store/imapreads.py).

Why: through the async driver every statement costs several hops between the event
loop and the driver's thread (cursor, execute, fetch, close, and BEGIN and ROLLBACK per
connection), each a GIL hand-over; a webmail page of five statements spent more of
the loop's time in those hops than in SQLite (measured with py-spy under
bench/web_load.py). A function given to `Reader.run` does all its statements in one
hop, the way the writer applies a batch (writer.py). The pool is small and bounded:
requests beyond it wait their turn, they do not open connections.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine

R = TypeVar("R")
READ_THREADS = 4


class Reader:
    def __init__(self, engine: Engine, threads: int = READ_THREADS):
        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store-reader")

    @property
    def engine(self) -> Engine:
        return self._engine

    async def run(self, fn: Callable[[Connection], R]) -> R:
        """fn(conn) in a worker thread, inside one read transaction (one snapshot)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[Connection], R]) -> R:
        with self._engine.connect() as conn:
            return fn(conn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._engine.dispose()
