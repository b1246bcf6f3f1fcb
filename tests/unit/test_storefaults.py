"""relay/core/storefaults.py: which exceptions are storage faults, and free space."""
from __future__ import annotations

import dataclasses
import errno
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from mailbox_store.writer import WriterClosed
from relay.core.config import load_config
from relay.core.storefaults import FREE_BYTES, classify, free_space, store_directory


def _real_sqlite_full(tmp_path: Path) -> OperationalError:
    """SQLITE_FULL from SQLite itself: a database capped at a few pages."""
    engine = create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
    with pytest.raises(OperationalError) as exc:
        with engine.begin() as conn:
            conn.execute(text("PRAGMA max_page_count = 3"))
            conn.execute(text("INSERT INTO t VALUES (zeroblob(100000))"))
    engine.dispose()
    return exc.value


def test_a_full_sqlite_database_is_a_space_fault(tmp_path: Path) -> None:
    error = _real_sqlite_full(tmp_path)
    assert "full" in str(error)  # what used to reach submission clients, SQL and all
    fault = classify(error)
    assert fault is not None and fault.space and fault.error == "OperationalError"
    assert classify(error.orig).space  # type: ignore[arg-type, union-attr]


@pytest.mark.parametrize("error, space", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
    (OSError(errno.EIO, "Input/output error"), False),
    (sqlite3.OperationalError("disk I/O error"), False),
    (sqlite3.OperationalError("attempt to write a readonly database"), False),
    (WriterClosed("the store is closing"), False),
])
def test_storage_faults(error: BaseException, space: bool) -> None:
    fault = classify(error)
    assert fault is not None and fault.space is space


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("y"), ConnectionResetError(errno.ECONNRESET, "reset"),
                                   FileNotFoundError(errno.ENOENT, "nope"), RuntimeError("bug")])
def test_other_exceptions_are_not_storage_faults(error: BaseException) -> None:
    assert classify(error) is None


def test_free_space_of_the_store_folder(dev_instance: Path) -> None:
    cfg = load_config(dev_instance / "relay.toml")
    assert store_directory(cfg.store_url) == dev_instance.resolve()
    space = free_space(cfg)
    assert space.free_bytes is not None and space.free_bytes > 0 and not space.low
    assert FREE_BYTES._value.get() == space.free_bytes  # the gauge follows
    assert free_space(dataclasses.replace(cfg, store_min_free_bytes=space.free_bytes * 2)).low
    assert not free_space(dataclasses.replace(cfg, store_min_free_bytes=0)).low
    remote = free_space(dataclasses.replace(cfg, store_url="postgresql+asyncpg://db/relay"))
    assert remote.path is None and not remote.low
