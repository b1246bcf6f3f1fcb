"""Bringing a database to the current schema with Alembic (migrations/versions/).

Runs at store open, on the writer's synchronous connection, before any other write.
A new table or column is a new revision there; `test_migrations.py` checks that the
migrated schema matches models.py exactly.
"""
from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

HEAD = "head"


def alembic_config(conn: Connection | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("mailbox_store") / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def upgrade(conn: Connection, revision: str = HEAD) -> None:
    command.upgrade(alembic_config(conn), revision)
