"""`mssante-relay backup` on PostgreSQL delegates to the database's tools and says which."""
from __future__ import annotations

import pytest


def test_backup_on_postgresql_names_pg_dump() -> None:
    from relay.ops.backup import BackupError, sqlite_path

    with pytest.raises(BackupError, match="pg_dump --format=custom"):
        sqlite_path("postgresql+asyncpg://relay@db.example/relay")
