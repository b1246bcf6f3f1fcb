"""A real PostgreSQL for the tests (Debian's `postgresql` package), started by the tests
themselves: `initdb` and `pg_ctl` in a temporary data directory, listening on a Unix
socket in that directory only (no TCP port, so parallel runs never clash), no system
service. As root, the server runs as the `postgres` user (PostgreSQL refuses root).

One server per run serves every test that needs PostgreSQL (the store tests, the
multi-node tests of tests/nodes/ and tests/integration/test_nodes_pg.py), and the
benchmarks start theirs the same way (`PgServer(pg_bindir()).start(durable=True)`).

- `pg_server` (session): the running server; `new_database()` gives a fresh database
  created from a template already migrated to head (CREATE DATABASE … TEMPLATE copies
  files: a few milliseconds instead of running every migration again).
- `store_url` (function): where a test's store lives. SQLite in the test's tmp_path by
  default; a fresh PostgreSQL database when MSSANTE_TEST_STORE=postgresql (the switch
  `.ci/run` uses for the store, delivery, queue and IMAP tests).
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from mailbox_store.engines import sync_url

SWITCH = "MSSANTE_TEST_STORE"
TEMPLATE = "relay_template"


def on_postgresql() -> bool:
    """True when this run puts the stores on PostgreSQL (MSSANTE_TEST_STORE=postgresql)."""
    value = os.environ.get(SWITCH, "sqlite").strip().lower()
    if value not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"{SWITCH} must be sqlite or postgresql, not {value!r}")
    return value == "postgresql"


def pg_bindir() -> Path | None:
    """The newest installed server's binaries (Debian keeps them out of PATH)."""
    base = Path("/usr/lib/postgresql")
    versions = sorted((p for p in base.glob("*/bin/initdb")), key=lambda p: int(p.parts[-3]), reverse=True) \
        if base.is_dir() else []
    if versions:
        return versions[0].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PgServer:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="relay-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root  # the socket file: <root>/.s.PGSQL.5432
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120)

    def start(self, durable: bool = False) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        # the superuser without a password (the fixtures); every other role by password, so
        # store.password_file is tested against a server that checks it
        hba = "local all postgres trust\nlocal all all scram-sha-256\n"
        self._run("sh", "-c", f"printf '{hba}' > {self.data}/pg_hba.conf")
        # No TCP at all; fsync off: a test server's data need not survive a power cut, and
        # the tests measure nothing (bench/store_engines.py starts it durable).
        opts = (f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} -c max_connections=300 "
                "-c shared_buffers=64MB")
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", opts, "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://postgres@/{database}?host={self.socket_dir}"

    def dsn(self, database: str) -> str:
        """A libpq/asyncpg DSN (no SQLAlchemy driver name)."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def admin(self) -> Engine:
        return create_engine(self.url("postgres", "psycopg"), isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def make_template(self) -> None:
        from mailbox_store import migrate
        with self.admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
        engine = create_engine(self.url(TEMPLATE, "psycopg"))
        with engine.begin() as conn:
            migrate.upgrade(conn)
        engine.dispose()

    def new_role(self, name: str, password: str, database: str) -> None:
        """A login role with a password, owner of database (made by new_database)."""
        db = make_url(database).database
        with self.admin().connect() as conn:
            conn.execute(text(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'"))
            conn.execute(text(f'ALTER DATABASE "{db}" OWNER TO "{name}"'))

    def new_database(self, migrated: bool = True) -> str:
        """The asyncpg URL of a new, empty database (at head when migrated)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self.admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{TEMPLATE}"' if migrated else "")))
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    server = PgServer(bindir)
    server.start()
    try:
        server.make_template()
        yield server
    finally:
        server.stop()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of this test's store: SQLite under tmp_path, or a fresh PostgreSQL
    database when MSSANTE_TEST_STORE=postgresql."""
    if on_postgresql():
        server: PgServer = request.getfixturevalue("pg_server")
        return server.new_database()
    return f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}"


@contextlib.contextmanager
def sql(url: str) -> Iterator[Connection]:
    """A synchronous connection to a test's store, whatever its engine, in one
    transaction committed at the end (tests that look at or alter rows directly)."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def use_store(config: Path, url: str, password_file: str = "") -> None:
    """Point an instance's relay.toml (as `init` writes it) at another store."""
    body = config.read_text()
    default = 'url = "sqlite+aiosqlite:///relay.db"'
    assert default in body, "relay.toml does not hold init's store.url"
    body = body.replace(default, f'url = "{url}"', 1).replace('password_file = ""',
                                                              f'password_file = "{password_file}"', 1)
    config.write_text(body)
