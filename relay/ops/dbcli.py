"""`mssante-relay db upgrade` and `db status`: the store's schema (Alembic revisions).

SQLite, the embedded default, is also upgraded when the daemon opens it; PostgreSQL is
shared by several nodes and only `db upgrade` migrates it (mailbox_store/engines.py):
a node refuses to start on a schema behind its code and names this command.

Registered into the main parser by relay.cli.build_parser, which hands over its config
loader and its UsageError (one line `mssante-relay: error: ...`, exit 2): this module
never imports relay.cli, which may be running as __main__.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from mailbox_store import engines, migrate
from mailbox_store.errors import StoreError
from relay.core.config import Config

# pg_advisory_xact_lock key: two `db upgrade` run at once on two nodes take turns
# (the second finds the schema at head and does nothing)
UPGRADE_LOCK = 0x6D7373616E7465  # "mssante"


class _Ctx:
    load: Callable[[argparse.Namespace], Config]
    usage_error: type[Exception] = Exception


ctx = _Ctx()


@contextmanager
def _connection(config: Config) -> Iterator[Connection]:
    """One transaction on the configured store, errors as one line naming the store."""
    try:
        engine = create_engine(engines.sync_url(config.store_url), poolclass=NullPool,
                               connect_args=engines.connect_args(config.store_url, config.store_password_file))
    except StoreError as e:  # store.password_file unreadable
        raise ctx.usage_error(str(e)) from None
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as e:
        detail = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        raise ctx.usage_error(f"store {engines.safe_url(config.store_url)}: {detail}") from None
    finally:
        engine.dispose()


def cmd_db_status(args: argparse.Namespace) -> int:
    """Exit 0 when the schema is at head, 1 when it is behind or unknown."""
    config = ctx.load(args)
    with _connection(config) as conn:
        state = engines.schema_state(conn)
        try:
            engines.check_schema(conn)
            verdict = "up to date"
        except StoreError as e:
            verdict = str(e)
    print(f"store: {engines.safe_url(config.store_url)}")
    print(f"current revision: {state.current or 'none (empty database)'}")
    print(f"head revision: {state.head}")
    print(f"state: {verdict}")
    return 0 if state.up_to_date else 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = ctx.load(args)
    with _connection(config) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": UPGRADE_LOCK})
        before = engines.schema_state(conn)
        if before.up_to_date:
            print(f"schema already at {before.head}: nothing to do")
            return 0
        try:
            engines.check_schema(conn)
        except engines.SchemaUnknown as e:  # a newer version's schema: never downgraded here
            raise ctx.usage_error(str(e)) from None
        except engines.SchemaBehind:
            pass
        migrate.upgrade(conn)
    print(f"schema upgraded from {before.current or 'an empty database'} to {before.head}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser, parser_class: type,
             load: Callable[[argparse.Namespace], Config], usage_error: type[Exception]) -> None:
    ctx.load, ctx.usage_error = load, usage_error
    d = sub.add_parser("db", help="the store's schema")
    dsub = d.add_subparsers(dest="db_command", required=True, parser_class=parser_class)
    s = dsub.add_parser("upgrade", parents=[common], help="bring the store's schema to this version (migrations)")
    s.set_defaults(func=cmd_db_upgrade)
    s = dsub.add_parser("status", parents=[common],
                        help="the schema's current and head revisions (exit 1 when an upgrade is due)")
    s.set_defaults(func=cmd_db_status)
