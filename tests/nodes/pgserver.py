"""A throwaway PostgreSQL server for the multi-node tests (issue 14 §3): Debian's
binaries, `initdb` + `pg_ctl` in a temporary directory, a Unix socket only (no TCP
port to clash with other test runs), as the `postgres` user when run as root. No
system service is used or touched."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PgServer:
    root: Path
    bindir: Path

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, db: str = "relay", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@/{db}?host={self.socket_dir}"

    def dsn(self, db: str = "relay") -> str:
        return f"postgresql://postgres@/{db}?host={self.socket_dir}"


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start(fsync: bool = False) -> PgServer:
    """fsync off for tests (thrown away); on for benchmarks, which measure durable commits."""
    bindir = binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    (root / "sock").mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "sock", "postgres")
    run = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"]), **run)  # type: ignore[call-overload]
    # listen_addresses empty: the socket only
    opts = (f"-c listen_addresses='' -c unix_socket_directories={root / 'sock'} -c max_connections=200"
            f" -c fsync={'on' if fsync else 'off'}")
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-o", opts, "-w",
                                 "-l", str(root / "log"), "start"]), **run)  # type: ignore[call-overload]
    server = PgServer(root, bindir)
    create_db(server, "relay")
    return server


def create_db(server: PgServer, name: str) -> None:
    """A new database at the schema's head: on PostgreSQL a node never migrates
    (`mssante-relay db upgrade` does; mailbox_store/engines.py)."""
    subprocess.run(_as_postgres([str(server.bindir / "createdb"), "-h", str(server.socket_dir), "-U", "postgres",
                                 name]), check=True, timeout=60, stderr=subprocess.PIPE)
    from sqlalchemy import create_engine
    from mailbox_store import migrate
    engine = create_engine(server.url(name, "postgresql+psycopg"))
    with engine.begin() as conn:
        migrate.upgrade(conn)
    engine.dispose()


def stop(server: PgServer) -> None:
    subprocess.run(_as_postgres([str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"), "-m", "immediate",
                                 "stop"]), check=False, timeout=60, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    shutil.rmtree(server.root, ignore_errors=True)
