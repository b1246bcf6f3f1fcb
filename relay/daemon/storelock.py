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
    os.ftruncate(fd, 0)  # no stale PID: only a daemon names itself (mark_daemon)
    return fd


def mark_daemon(fd: int | None) -> None:
    """Write our PID into the lock we hold: `trustlist update` signals it (SIGHUP) to
    reload. A restore holding the lock writes nothing, so it is never signalled."""
    if fd is not None:
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def holder(store_url: str) -> int | None:
    """PID of the daemon holding the store's lock, or None when no process holds it
    (or the store is not SQLite)."""
    path = lock_path(store_url)
    if path is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a daemon runs; its PID is in the file
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def open_write_lock(store_url: str) -> int:
    """The descriptor of `<db>.write-lock`, whose flock the writers of one daemon's
    processes take in turn (imap.processes > 1, mailbox_store/writer.py)."""
    path = lock_path(store_url)
    if path is None:
        raise ValueError("imap.processes: only with the SQLite store")
    return os.open(path.with_name(path.name.removesuffix(".lock") + ".write-lock"), os.O_RDWR | os.O_CREAT, 0o600)


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
