"""mailbox_store/engines.py: which store URLs are accepted, where the password comes
from, and the writer's retry on PostgreSQL's transaction-rollback errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from mailbox_store.engines import connect_args, read_password, safe_url, sync_url, url_problem
from mailbox_store.errors import StoreError
from mailbox_store.writer import _retryable


def test_store_urls() -> None:
    assert url_problem("sqlite+aiosqlite:////srv/relay.db") is None
    assert url_problem("postgresql+asyncpg://relay@db.example/relay") is None
    assert url_problem("postgresql+asyncpg://relay@/relay?host=/run/postgresql") is None
    assert "password does not belong" in (url_problem("postgresql+asyncpg://relay:pw@db/relay") or "")
    assert "unsupported database 'mysql+aiomysql'" in (url_problem("mysql+aiomysql://u@h/d") or "")
    assert "unsupported database 'postgresql'" in (url_problem("postgresql://u@h/d") or "")  # sync driver
    assert "no database name" in (url_problem("postgresql+asyncpg://relay@db") or "")
    assert "not a database URL" in (url_problem("not a url") or "")
    assert str(sync_url("postgresql+asyncpg://relay@db/relay")) == "postgresql+psycopg://relay@db/relay"
    assert str(sync_url("sqlite+aiosqlite:////srv/relay.db")) == "sqlite:////srv/relay.db"
    assert safe_url("postgresql+asyncpg://relay:pw@db/relay") == "postgresql+asyncpg://relay:***@db/relay"


def test_password_file(tmp_path: Path) -> None:
    f = tmp_path / "db.password"
    f.write_text("s3cret with spaces\nignored second line\n")
    f.chmod(0o640)
    assert read_password(f) == "s3cret with spaces"
    assert connect_args("postgresql+asyncpg://relay@db/relay", f) == {"password": "s3cret with spaces"}
    assert connect_args("sqlite+aiosqlite:////srv/relay.db", f) == {}  # SQLite has no password
    assert connect_args("postgresql+asyncpg://relay@db/relay", None) == {}  # libpq's PGPASSFILE
    f.chmod(0o644)
    with pytest.raises(StoreError, match="^store.password_file: .* readable by everyone"):
        read_password(f)
    f.chmod(0o600)
    f.write_text("\n")
    with pytest.raises(StoreError, match="^store.password_file: .* is empty"):
        read_password(f)
    with pytest.raises(StoreError, match="^store.password_file: cannot read"):
        read_password(tmp_path / "absent")


class _PgError(Exception):
    def __init__(self, sqlstate: str):
        super().__init__("error")
        self.sqlstate = sqlstate


def test_writer_retries_lock_deadlock_and_serialization_failures_only() -> None:
    assert _retryable(OperationalError("BEGIN", {}, Exception("database is locked")))
    assert _retryable(OperationalError("UPDATE", {}, _PgError("40P01")))  # deadlock_detected
    assert _retryable(OperationalError("UPDATE", {}, _PgError("40001")))  # serialization_failure
    assert not _retryable(OperationalError("UPDATE", {}, _PgError("53100")))  # disk_full: fails at once
