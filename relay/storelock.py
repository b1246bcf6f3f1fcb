"""One daemon per SQLite store: it holds an exclusive lock on `<db>.lock` while it runs.
A second daemon on the same file refuses to start, and `restore` refuses to swap the
database under a running daemon (its deliveries would go to an unlinked file)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

SQLITE_PREFIX = "sqlite+aiosqlite:///"


class StoreBusy(Exception):
    pass


def lock_path(store_url: str) -> Path | None:
    if not store_url.startswith(SQLITE_PREFIX):
        return None  # PostgreSQL: several daemons are the point
    return Path(store_url[len(SQLITE_PREFIX):] + ".lock")


def acquire(store_url: str) -> int | None:
    """The lock's file descriptor (keep it open to hold the lock), or None when the store
    is not SQLite. StoreBusy when another process holds it."""
    path = lock_path(store_url)
    if path is None or not path.parent.is_dir():
        return None  # no folder, no store: opening it will say so
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(f"a daemon is running on this store ({path} is locked)") from None
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
