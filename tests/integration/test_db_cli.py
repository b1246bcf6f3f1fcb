"""`mssante-relay db upgrade` / `db status`, and `serve` on a schema behind its code
(issue 14): run as real processes against a real PostgreSQL (tests/pg.py) and SQLite."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sqlalchemy import text

from mailbox_store.engines import schema_state
from tests.integration.test_cli import one_line_error, run
from tests.pg import PgServer, sql, use_store


def refused_to_start(p: subprocess.CompletedProcess[str], *words: str) -> None:
    """serve's refusal: exit 2, its last line (after the JSON log lines) names the cause."""
    assert p.returncode == 2, p
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("mssante-relay: error: cannot start: "), last
    for w in words:
        assert w in last, (w, last)


def copy_instance(template_instance: Path, tmp_path: Path) -> Path:
    inst = tmp_path / "inst"
    shutil.copytree(template_instance, inst, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    return inst


def test_postgresql_is_migrated_by_db_upgrade_only(pg_server: PgServer, template_instance: Path,
                                                   tmp_path: Path) -> None:
    inst = copy_instance(template_instance, tmp_path)
    url = pg_server.new_database(migrated=False)
    cfg = inst / "relay.toml"
    use_store(cfg, url)
    p = run("db", "status", config=cfg)
    assert p.returncode == 1, p
    assert "current revision: none (empty database)" in p.stdout and "mssante-relay db upgrade" in p.stdout
    # the daemon neither migrates a shared database nor starts on it: one line, the command to run
    refused_to_start(run("serve", config=cfg), "schema is at revision none", "run `mssante-relay db upgrade`")
    p = run("mailbox", "list", config=cfg)  # the other commands say the same
    one_line_error(p, "run `mssante-relay db upgrade`")
    p = run("db", "upgrade", config=cfg)
    assert p.returncode == 0, p
    with sql(url) as conn:
        state = schema_state(conn)
    assert state.up_to_date and p.stdout.strip() == f"schema upgraded from an empty database to {state.head}"
    p = run("db", "status", config=cfg)
    assert p.returncode == 0 and "state: up to date" in p.stdout, p
    assert run("db", "upgrade", config=cfg).stdout.strip() == f"schema already at {state.head}: nothing to do"
    assert run("mailbox", "list", config=cfg).returncode == 0
    # a schema a newer version wrote: refused by serve and by db upgrade, never "downgraded"
    with sql(url) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    one_line_error(run("db", "upgrade", config=cfg), "revision 9999_future, unknown to this version")
    refused_to_start(run("serve", config=cfg), "unknown to this version")


def test_the_password_comes_from_password_file_never_the_url(pg_server: PgServer, template_instance: Path,
                                                             tmp_path: Path) -> None:
    inst = copy_instance(template_instance, tmp_path)
    url = pg_server.new_database(migrated=False)
    pg_server.new_role("relay_pw", "Tr0ub4dor-3", url)
    url = url.replace("postgres@", "relay_pw@")
    secret = inst / "db.password"
    secret.write_text("wrong password\n")
    secret.chmod(0o600)
    cfg = inst / "relay.toml"
    use_store(cfg, url, str(secret))
    p = run("db", "upgrade", config=cfg)
    one_line_error(p, "store postgresql+asyncpg://relay_pw@", "password authentication failed")
    assert "wrong password" not in p.stderr
    secret.write_text("Tr0ub4dor-3\n")
    assert run("db", "upgrade", config=cfg).returncode == 0
    p = run("db", "status", config=cfg)
    assert p.returncode == 0 and "Tr0ub4dor" not in p.stdout, p
    secret.chmod(0o644)  # readable by everyone: refused before any connection
    one_line_error(run("db", "status", config=cfg), "store.password_file:", "readable by everyone")


def test_sqlite_status_and_upgrade(template_instance: Path, tmp_path: Path) -> None:
    inst = copy_instance(template_instance, tmp_path)
    cfg = inst / "relay.toml"
    p = run("db", "status", config=cfg)
    assert p.returncode == 1 and "current revision: none (empty database)" in p.stdout, p
    p = run("db", "upgrade", config=cfg)
    assert p.returncode == 0 and p.stdout.startswith("schema upgraded from an empty database to "), p
    assert run("db", "status", config=cfg).returncode == 0
