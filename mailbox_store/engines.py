"""Which database a store URL names, how to connect to it, and where its schema stands.

Two engines (README "Store"): SQLite through aiosqlite, the embedded default, and
PostgreSQL through asyncpg for several nodes over one database. The writer and the
webmail's reader run on the synchronous driver of the same database (sqlite3, psycopg),
in their own threads (writer.py, reader.py).

- A password never sits in the URL (the URL is in relay.toml and is printed by
  `config check`): it comes from `store.password_file` (the password alone on its first
  line) or from libpq's own PGPASSFILE / ~/.pgpass, which both drivers read.
- The schema: SQLite, embedded, is upgraded when the store opens (one process owns the
  file). PostgreSQL is shared by several nodes: an upgrade is an operator's act
  (`mssante-relay db upgrade`), and a node refuses to open a schema behind its code
  rather than migrate under the feet of the others.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from mailbox_store.errors import StoreError

SQLITE = "sqlite+aiosqlite"
POSTGRESQL = "postgresql+asyncpg"
ENGINES = (SQLITE, POSTGRESQL)
UPGRADE_COMMAND = "mssante-relay db upgrade"


class SchemaBehind(StoreError):
    """The database's schema is older than this code (PostgreSQL: never migrated at open)."""


class SchemaUnknown(StoreError):
    """The database is at a revision this code does not know (a newer version migrated it)."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None  # None: an empty database
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def url_problem(url: str) -> str | None:
    """What is wrong with a store URL, in words for `store.url: …`; None when usable."""
    try:
        u = make_url(url)
    except ArgumentError:
        return f"not a database URL: {url!r}"
    if u.drivername not in ENGINES:
        return f"unsupported database {u.drivername!r} (expected {' or '.join(d + '://' for d in ENGINES)})"
    if u.password is not None:
        return "a password does not belong in the URL (it is printed and kept in the config): " \
               "put it in store.password_file or in PGPASSFILE"
    if u.drivername == POSTGRESQL and not u.database:
        return "no database name after the host (postgresql+asyncpg://user@host/DATABASE)"
    return None


def is_postgresql(url: str) -> bool:
    return make_url(url).drivername.startswith("postgresql")


def safe_url(url: str) -> str:
    """The URL to print: a password, should one be there, elided."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def sync_url(url: str | URL) -> URL:
    """The synchronous driver of the same database, for the writer's and reader's threads."""
    u = make_url(url)
    sync_driver = {SQLITE: "sqlite", POSTGRESQL: "postgresql+psycopg"}
    return u.set(drivername=sync_driver.get(u.drivername, u.drivername))


def read_password(path: Path) -> str:
    """The first line of store.password_file; StoreError naming the field otherwise."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise StoreError(f"store.password_file: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise StoreError(f"store.password_file: {path} is not UTF-8 text") from None
    if mode & stat.S_IROTH:
        raise StoreError(f"store.password_file: {path} is readable by everyone (chmod 600)")
    password = (text.splitlines() or [""])[0]
    if not password:
        raise StoreError(f"store.password_file: {path} is empty")
    return password


def connect_args(url: str, password_file: Path | None) -> dict[str, Any]:
    """Driver arguments besides the URL (asyncpg and psycopg take the same): the password,
    read from its file at each open (a rotated password applies at the next start)."""
    if password_file is None or not is_postgresql(url):
        return {}
    return {"password": read_password(password_file)}


def schema_state(conn: Connection) -> SchemaState:
    """Current and head revisions of the store's schema (alembic_version)."""
    from mailbox_store.migrate import alembic_config
    script = ScriptDirectory.from_config(alembic_config(None))
    heads = script.get_heads()
    current = MigrationContext.configure(conn).get_current_revision()
    return SchemaState(current, heads[0] if len(heads) == 1 else "+".join(sorted(heads)))


def check_schema(conn: Connection) -> None:
    """SchemaBehind or SchemaUnknown unless the schema is at head."""
    from mailbox_store.migrate import alembic_config
    state = schema_state(conn)
    if state.up_to_date:
        return
    if state.current is not None and not _known(ScriptDirectory.from_config(alembic_config(None)), state.current):
        raise SchemaUnknown(f"the store's schema is at revision {state.current}, unknown to this version "
                            "(a newer mssante-relay upgraded it)")
    raise SchemaBehind(f"the store's schema is at revision {state.current or 'none (empty database)'}, "
                       f"this version needs {state.head}: run `{UPGRADE_COMMAND}`")


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for an unknown or malformed id
        return False
