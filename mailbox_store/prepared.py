"""Hot statements run straight on the DBAPI cursor: compiled once per dialect (and per
IN-list length), executed with only the value conversions their columns need.

Why (issue 12 §3, py-spy --gil under imaptest's stress with logins held): a quarter of
the daemon's GIL time was SQLAlchemy's execute path around statements already built once
(`_execute_context`, `_init_compiled`, the cursor result, the event dispatch), several
times what SQLite took to run them. A `Prepared` statement keeps what that path
recomputes at each call: the SQL text, the order of its parameters, the bind and result
processors of its types. What it gives back is what `conn.execute` gives, types
included (datetimes parsed on SQLite, booleans from integers): tests/unit/test_prepared.py
compares both on SQLite and PostgreSQL for every statement switched.

Rules kept from SQLAlchemy's path:
- the statement runs on the connection's own DBAPI connection, inside whatever
  transaction the caller's Connection (or the Reader's hop, reader.py) has open;
- a driver error comes out as SQLAlchemy's wrapper (`sqlalchemy.exc.OperationalError`
  with `.orig`), so the writer's lock retry and relay/core/storefaults.py classify it as
  before; a lost connection is invalidated, never handed out again;
- while someone listens to the engine's cursor events (a test counting statements,
  tracing), the statement goes through `conn.execute` so that they see it.
"""
from __future__ import annotations

import functools
import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import Connection, bindparam, insert
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

_SHAPES_MAX = 1024  # compiled IN-list lengths kept per statement and dialect (bounded memory)
_DIALECTS_MAX = 16  # engines a statement keeps its compiled forms for


class _Ref:
    """Placeholder for a caller's value while the SQL is expanded: where it lands is the
    recipe (`key`, and the position in the list for an IN list)."""
    __slots__ = ("key", "index")

    def __init__(self, key: str, index: int | None):
        self.key, self.index = key, index


@dataclass(frozen=True, slots=True)
class _Shape:
    """One executable form: SQL text and how to build its parameters from the caller's."""
    sql: str
    # per DBAPI parameter, in order: (caller's key or None, index in its list or None,
    # constant when key is None, bind processor or None); `names` for named paramstyles
    recipe: tuple[tuple[str | None, int | None, Any, Callable[[Any], Any] | None], ...]
    names: tuple[str, ...] | None


class _Compiled:
    """A statement compiled for one dialect, its shapes (one per IN-list lengths) and
    its result conversions."""

    def __init__(self, stmt: Executable, dialect: Dialect):
        compiled = stmt.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.compiled = compiled
        self.positional = compiled.positional
        self.expanding = tuple(sorted({b.key for b in compiled.binds.values() if b.expanding}))
        self.user_keys = tuple(sorted({b.key for b in compiled.binds.values() if b.value is None
                                       and b.callable is None}))
        self.shapes: dict[tuple[int, ...], _Shape] = {}
        self.row_type: Any = namedtuple("Row", [c.keyname for c in compiled._result_columns], rename=True)
        self.make_row = functools.partial(tuple.__new__, self.row_type)  # no per-row Python frame
        self.row_processors: list[Callable[[Any], Any] | None] | None = None
        self.results_known = False
        self.lock = threading.Lock()

    def shape(self, params: Mapping[str, Any]) -> _Shape:
        lengths = tuple(len(params[k]) for k in self.expanding)
        found = self.shapes.get(lengths)
        if found is not None:
            return found
        sample: dict[str, Any] = {k: _Ref(k, None) for k in self.user_keys}
        for k, n in zip(self.expanding, lengths, strict=True):
            sample[k] = [_Ref(k, i) for i in range(n)]
        state = self.compiled.construct_expanded_state(sample)
        processors = {**self.compiled._bind_processors, **state.processors}
        order = state.positiontup if self.positional else list(state.parameters)
        assert order is not None
        recipe = []
        for name in order:
            value = state.parameters[name]
            proc = processors.get(name)
            if isinstance(value, _Ref):
                recipe.append((value.key, value.index, None, proc))
            else:  # a constant of the statement (literal(), limit(1), "+ 1"), processed once
                recipe.append((None, None, proc(value) if proc is not None else value, None))
        found = _Shape(state.statement, tuple(recipe), None if self.positional else tuple(order))
        with self.lock:
            if len(self.shapes) >= _SHAPES_MAX:
                self.shapes.clear()
            self.shapes[lengths] = found
        return found

    def results(self, dialect: Dialect, description: Sequence[Any]) -> None:
        """The result processors of the columns, chosen as SQLAlchemy chooses them (from
        the column's type and the driver's type code), at the first execution."""
        columns = self.compiled._result_columns
        if len(columns) != len(description):
            raise RuntimeError("prepared statement: the result does not match its columns")
        procs = [c.type._cached_result_processor(dialect, d[1]) for c, d in zip(columns, description, strict=True)]
        self.row_processors = procs if any(p is not None for p in procs) else None
        self.results_known = True


def _values(shape: _Shape, params: Mapping[str, Any]) -> Any:
    out = []
    for key, index, const, proc in shape.recipe:
        if key is None:
            out.append(const)
            continue
        v = params[key] if index is None else params[key][index]
        out.append(proc(v) if proc is not None and v is not None else v)
    return out if shape.names is None else dict(zip(shape.names, out, strict=True))


class Prepared:
    """A Core statement (SELECT, or UPDATE/DELETE with or without RETURNING) to run
    many times with different parameters. Rows come back as named tuples with the
    statement's column keys, the values converted as `conn.execute` converts them."""

    def __init__(self, stmt: Executable):
        self.stmt = stmt
        self._by_dialect: dict[int, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        c = self._by_dialect.get(id(dialect))
        if c is None or c.compiled.dialect is not dialect:
            c = _Compiled(self.stmt, dialect)
            if len(self._by_dialect) >= _DIALECTS_MAX:  # engines come and go (tests): bounded
                self._by_dialect.clear()
            self._by_dialect[id(dialect)] = c
        return c

    def all(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row (named tuples)."""
        if _traced(conn):
            return list(map(self._for(conn.dialect).make_row, conn.execute(self.stmt, params or {}).all()))
        return self._run(conn, params or {}, many=False)

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, None without rows (as Result.scalar)."""
        rows = self.all(conn, params)
        return rows[0][0] if rows else None

    def scalars(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        return [r[0] for r in self.all(conn, params)]

    def execute(self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Run a statement returning no rows, once or for each parameter set
        (executemany; no IN list then)."""
        if _traced(conn):
            conn.execute(self.stmt, params)  # type: ignore[arg-type]
            return
        self._run(conn, params, many=not isinstance(params, Mapping))

    def _run(self, conn: Connection, params: Any, many: bool) -> list[Any]:
        dialect = conn.dialect
        c = self._for(dialect)
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None
        if many:
            if not params:
                return []
            shape = c.shape(params[0])
            values: Any = [_values(shape, p) for p in params]
        else:
            shape = c.shape(params)
            values = _values(shape, params)
        cursor = None
        try:
            cursor = dbapi_conn.cursor()
            if many:
                cursor.executemany(shape.sql, values)
                return []
            cursor.execute(shape.sql, values)
            if cursor.description is None:
                return []
            rows = cursor.fetchall()
            if not c.results_known:
                c.results(dialect, cursor.description)
        except Exception as e:
            _raise_wrapped(conn, e, shape.sql, values, cursor, many)
        finally:
            _close(cursor)
        make = c.make_row
        procs = c.row_processors
        if procs is None or not rows:
            return list(map(make, rows))
        # column by column, in C loops (map, zip): a Python loop per row cost more than
        # SQLAlchemy's own rows on a 200-message snapshot (bench/store_prepared.py)
        columns: list[Any] = list(zip(*rows))
        for i, proc in enumerate(procs):
            if proc is not None:
                columns[i] = map(proc, columns[i])
        return list(map(make, zip(*columns)))


def prepared_insert(model: Any, columns: Sequence[str]) -> Prepared:
    """An INSERT of these columns of a mapped class, each value from the parameter of
    the column's name; for executemany with rows that name every column (no column
    default is applied: the caller's rows give them all, as SQLAlchemy's executemany
    with a dict per row would only fill the ones missing)."""
    return Prepared(insert(model).values({c: bindparam(c) for c in columns}))


def _traced(conn: Connection) -> bool:
    if not (conn._has_events or conn.engine._has_events):  # two flags: most engines have no listener
        return False
    return bool(conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute)


def _wrapped(conn: Connection, error: Exception, sql: str, values: Any, cursor: Any, many: bool) -> BaseException:
    """The driver's error as SQLAlchemy wraps it (`.orig` the driver's); a disconnect
    invalidates the Connection, so its DBAPI connection is never used again."""
    dialect = conn.dialect
    dbapi = dialect.loaded_dbapi
    if not isinstance(error, dbapi.Error):
        return error
    lost = dialect.is_disconnect(error, conn.connection.dbapi_connection, cursor)
    if lost:
        conn.invalidate(error)
    return DBAPIError.instance(sql, values, error, dbapi.Error, connection_invalidated=lost, dialect=dialect,
                               ismulti=many)


def driver_sql(conn: Connection, sql: str) -> None:
    """A statement without parameters or rows (BEGIN) on the DBAPI connection, its
    error wrapped as `conn.exec_driver_sql` would."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = None
    try:
        cursor = dbapi_conn.cursor()
        cursor.execute(sql)
    except Exception as e:
        _raise_wrapped(conn, e, sql, (), cursor, False)
    finally:
        _close(cursor)


def _raise_wrapped(conn: Connection, error: Exception, sql: str, values: Any, cursor: Any, many: bool) -> NoReturn:
    """Raise the driver's error as SQLAlchemy wraps it (`_wrapped`), chained to it."""
    wrapped = _wrapped(conn, error, sql, values, cursor, many)
    if wrapped is error:
        raise error
    raise wrapped from error


def _close(cursor: Any) -> None:
    if cursor is not None:
        try:
            cursor.close()
        except Exception:  # a cursor of a lost connection: the error raised tells
            pass
