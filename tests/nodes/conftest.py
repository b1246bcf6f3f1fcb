"""Fixtures of the multi-node tests: `pg` is a throwaway PostgreSQL server (skipped
when Debian's `postgresql` package is not installed), `pg_db` a fresh database on it."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from tests.nodes import pgserver

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg() -> Iterator[pgserver.PgServer]:
    if pgserver.binaries() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = pgserver.start()
    try:
        yield server
    finally:
        pgserver.stop(server)


@pytest.fixture
def pg_db(pg: pgserver.PgServer) -> str:
    """A fresh, empty database: the first Store.open migrates it."""
    name = f"t{next(_names)}"
    pgserver.create_db(pg, name)
    return name
