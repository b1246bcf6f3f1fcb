"""Storage faults: what a front answers when the store cannot write (DESIGN.md §6
"Faults answer in codes"), and the free space left where the store lives.

Two facts, one place, so that the MX, submission, IMAP and /healthz agree:
- `classify(error)`: is this exception a failure of the store (a full disk or quota,
  an I/O error, a read-only or closing store) and, if so, is it about space? Anything
  else is not ours to name: the caller re-raises or answers its generic local error.
- `free_space(config)`: the bytes free on the filesystem of the SQLite database, and
  whether that is under `store.min_free_bytes`. The MX and submission refuse at MAIL
  below it (452 4.3.1, RFC 3463 §3.4 X.3.1 "mail system full"), /healthz answers 503,
  and the gauge `mssante_store_free_bytes` shows it.

Never a message text to a client: SQLAlchemy's carries the SQL, the driver's message
and a "Background on this error" line; only the class name goes to the log.
"""
from __future__ import annotations

import errno
import functools
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Gauge
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from mailbox_store.writer import WriterClosed
from policy.decisions import STORE_FULL, STORE_UNAVAILABLE, Decision
from relay.core.config import Config

FREE_BYTES = Gauge("mssante_store_free_bytes", "Bytes free on the filesystem of the store (SQLite)")
MIN_FREE_BYTES = Gauge("mssante_store_min_free_bytes", "store.min_free_bytes: below it, mail is refused")

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_IO_ERRNOS = {errno.EIO, errno.EROFS}
# SQLite result codes (https://sqlite.org/rescode.html): SQLITE_FULL, and the failures
# of the file itself (I/O, read-only, cannot open, corrupt)
_SQLITE_FULL = 13
# PostgreSQL SQLSTATE class 53 "insufficient resources": 53100 disk_full, 53200
# out_of_memory, 53300 too_many_connections, 53400 configuration_limit_exceeded
_PG_DISK_FULL = "53100"


@dataclass(frozen=True)
class StoreFault:
    space: bool  # True: the disk or a quota is full; False: any other storage failure
    error: str  # the exception's class name, for the log (never its text)


def classify(error: BaseException) -> StoreFault | None:
    """The storage fault this exception is, or None when it is not one."""
    if isinstance(error, WriterClosed):
        return StoreFault(False, type(error).__name__)
    orig: BaseException | None = error
    if isinstance(error, DBAPIError):
        orig = error.orig
    elif isinstance(error, SQLAlchemyError):
        return StoreFault(False, type(error).__name__)
    if isinstance(orig, sqlite3.Error):
        full = getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(orig)
        return StoreFault(full, type(error).__name__)
    if isinstance(orig, OSError) and not isinstance(orig, ConnectionError):
        if orig.errno in _SPACE_ERRNOS:
            return StoreFault(True, type(error).__name__)
        if orig.errno in _IO_ERRNOS:
            return StoreFault(False, type(error).__name__)
        return None
    if isinstance(error, DBAPIError):  # another driver (asyncpg, psycopg)
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return StoreFault(state == _PG_DISK_FULL, type(error).__name__)
    return None


@dataclass(frozen=True)
class FreeSpace:
    path: Path | None  # the folder measured; None when the store is not a local file
    free_bytes: int | None
    min_free_bytes: int

    @property
    def low(self) -> bool:
        return self.free_bytes is not None and self.free_bytes < self.min_free_bytes


@functools.lru_cache(maxsize=8)
def store_directory(store_url: str) -> Path | None:
    """The folder of a SQLite database (its WAL and -shm files live beside it); None
    for a server database, whose disk this process cannot see."""
    prefix = "sqlite+aiosqlite:///"
    if not store_url.startswith(prefix):
        return None
    path = store_url[len(prefix):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).parent


def free_space(config: Config) -> FreeSpace:
    """statvfs(2) of the store's folder: a few microseconds, so asked at every MAIL
    rather than cached (space comes back the moment an operator frees it)."""
    folder = store_directory(config.store_url)
    MIN_FREE_BYTES.set(config.store_min_free_bytes)
    if folder is None:
        return FreeSpace(None, None, config.store_min_free_bytes)
    try:
        st = os.statvfs(folder)
    except OSError:
        return FreeSpace(folder, None, config.store_min_free_bytes)
    free = st.f_bavail * st.f_frsize  # what an unprivileged writer may still use
    FREE_BYTES.set(free)
    return FreeSpace(folder, free, config.store_min_free_bytes)


def store_failure(error: BaseException, config: Config) -> Decision | None:
    """The answer to a store that could not write: 452 4.3.1 when space is the cause
    (the error says so, or free space is under store.min_free_bytes), 451 4.3.0
    otherwise; None when `error` is no storage fault."""
    fault = classify(error)
    if fault is None:
        return None
    if fault.space or free_space(config).low:
        return STORE_FULL
    return STORE_UNAVAILABLE
