"""The Alembic migrations build exactly the schema of models.py."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from mailbox_store import migrate
from mailbox_store.models import Base


def test_migrated_schema_matches_models(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        migrate.upgrade(conn)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert set(inspect(conn).get_table_names()) == {"alembic_version", *Base.metadata.tables}


def test_upgrade_is_idempotent_and_downgrade_empties(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        migrate.upgrade(conn)
    with engine.begin() as conn:
        migrate.upgrade(conn)  # already at head: nothing to do, no error
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}


def test_the_same_migrations_build_the_models_schema_on_postgresql(pg_server) -> None:  # type: ignore[no-untyped-def]
    # issue 14: one chain of migrations for both engines; downgrade works there too
    from sqlalchemy.pool import NullPool

    from mailbox_store.engines import sync_url
    engine = create_engine(sync_url(pg_server.new_database(migrated=False)), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == []
            assert set(inspect(conn).get_table_names()) == {"alembic_version", *Base.metadata.tables}
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
