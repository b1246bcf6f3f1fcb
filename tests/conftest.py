"""Fixtures shared by every test folder: the store's engine (tests/pg.py)."""
from tests.pg import pg_server, store_url  # noqa: F401  (fixtures)
