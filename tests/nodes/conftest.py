"""Fixtures of the multi-node tests: `pg` is the run's one throwaway PostgreSQL server
(tests/pg.py's `pg_server`; skipped when Debian's `postgresql` package is not
installed), `pg_db` the name of a fresh database on it, already at the schema's head (on
PostgreSQL a node never migrates: `mssante-relay db upgrade` does, mailbox_store/engines.py)."""
from __future__ import annotations

import pytest
from sqlalchemy import make_url

from tests.pg import PgServer


@pytest.fixture
def pg(pg_server: PgServer) -> PgServer:
    return pg_server


@pytest.fixture
def pg_db(pg_server: PgServer) -> str:
    name = make_url(pg_server.new_database()).database
    assert name is not None
    return name
