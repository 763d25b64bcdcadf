"""Bulk writes in one statement whatever their size.

On PostgreSQL, rows travel as one array per column and the server unpacks them
(``INSERT … SELECT … FROM unnest(…)``, ``UPDATE … FROM unnest(…)``): one statement, one
plan, one execution, where an executemany runs the statement once per row. A single row
goes as plain values (``INSERT … VALUES``), and an insert of many rows by ``COPY``. Elsewhere
(SQLite, in-process) an executemany is already cheap and is used as is.

Values are passed as the database driver takes them (no SQLAlchemy type processing):
aware datetimes, UUIDs, and JSON columns as the Python values to serialise.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    Select,
    Table,
    TextClause,
    any_,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from app import signals

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def among(session: AsyncSession, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``, for lists of thousands. On PostgreSQL, ``= ANY`` of one array
    parameter: one value to bind and one statement to prepare and plan whatever the count,
    where an IN list renders, sends and plans a parameter per value."""
    if is_postgresql(session):
        return column == any_(literal(list(values), ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def among_bound(column: Any, name: str, *, postgresql: bool) -> ColumnElement[bool]:
    """``column IN`` the list bound as ``name`` when the statement runs, in a statement
    built once: one parameter whatever the list's length (on PostgreSQL ``= ANY`` of an
    array, elsewhere the members of a JSON array), where an expanding IN parameter is
    rewritten into a parameter per value at every execution."""
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    members: Select[Any] = select(literal_column("value")).select_from(
        func.json_each(bindparam(name, type_=JSON))
    )
    return column.in_(members)  # type: ignore[no-any-return]


@lru_cache(maxsize=1024)
def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type.dialect_impl(_PG), JSON)


def _sql_type(table: Table, name: str, *, array: bool) -> str:
    """The PostgreSQL type a column's values travel in: an array of them, or one value."""
    scalar = table.c[name].type.compile(dialect=_PG)
    return f"{scalar}[]" if array else scalar


def _insert_part(table: Table, columns: tuple[str, ...], prefix: str, *, one: bool) -> str:
    """The insert of these columns, one parameter each (named ``prefix`` and the column's
    position): ``INSERT … SELECT … FROM unnest(…)`` of arrays, or for ``one`` row
    ``INSERT … VALUES`` of plain values (the driver checks every array and each of its
    elements for nesting as it encodes them; a row of a create has ~40 columns)."""
    quote = _PG.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    cast = ", ".join(
        f"CAST(:{prefix}{n} AS {_sql_type(table, c, array=not one)})" for n, c in enumerate(columns)
    )
    # Identifiers come from the table's metadata, values only ever as bound parameters.
    if one:
        return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({cast})"  # noqa: S608
    picked = ", ".join(f"bulk.{quote(c)}" for c in columns)
    return (
        f"INSERT INTO {quote(table.name)} ({names}) SELECT {picked} "  # noqa: S608
        f"FROM unnest({cast}) AS bulk({names})"
    )


def _insert_parameters(table: Table, rows: Sequence[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The parameters of ``_insert_part`` for these rows (one row: its values, else arrays)."""
    columns = columns_of(table, rows).values()
    if len(rows) == 1:
        return {f"{prefix}{n}": values[0] for n, values in enumerate(columns)}
    return {f"{prefix}{n}": values for n, values in enumerate(columns)}


@lru_cache(maxsize=64)
def _insert_sql(table: Table, columns: tuple[str, ...], one: bool) -> TextClause:
    return text(_insert_part(table, columns, "p", one=one))


def columns_of(table: Table, rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The rows as one list per column (every row has the same keys), JSON as its text (the
    driver's JSONB codec takes text)."""
    names = list(rows[0])
    out: dict[str, list[Any]] = {}
    for name in names:
        if _is_json(table, name):
            out[name] = [None if row[name] is None else json.dumps(row[name]) for row in rows]
        else:
            out[name] = [row[name] for row in rows]
    return out


# Below this many rows a PostgreSQL insert is one prepared ``INSERT … unnest`` (one round
# trip); from it on, COPY (an introspection and a copy-in exchange, cheaper per row).
COPY_MIN_ROWS = 64


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (dicts with the same keys) in one statement (inside ``one_statement``:
    with the block's other inserts, at its end)."""
    if not rows:
        return
    held: list[tuple[Table, Sequence[dict[str, Any]]]] | None = session.info.get(_HELD)
    if held is not None:
        held.append((table, rows))
        return
    if not is_postgresql(session):
        await session.execute(insert(table), list(rows))
        return
    driver = await _driver_connection(session) if len(rows) >= COPY_MIN_ROWS else None
    if driver is not None:
        columns = columns_of(table, rows)
        await driver.copy_records_to_table(
            table.name, records=list(zip(*columns.values(), strict=True)), columns=list(columns)
        )
        return
    statement = _insert_sql(table, tuple(rows[0]), len(rows) == 1)
    await session.execute(statement, _insert_parameters(table, rows, "p"))


async def _driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, when its transaction has begun (COPY then
    runs inside it; before that it would run, and commit, on its own)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None or not driver.is_in_transaction():
        return None
    return driver


@lru_cache(maxsize=64)
def _update_sql(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    quote = _PG.identifier_preparer.quote
    every = (key, *columns)
    names = ", ".join(quote(c) for c in every)
    sets = ", ".join(f"{quote(c)} = bulk.{quote(c)}" for c in columns)
    arrays = ", ".join(
        f"CAST(:p{n} AS {_sql_type(table, c, array=True)})" for n, c in enumerate(every)
    )
    t = quote(table.name)
    return text(
        f"UPDATE {t} SET {sets} FROM unnest({arrays}) AS bulk({names}) "  # noqa: S608
        f"WHERE {t}.{quote(key)} = bulk.{quote(key)}"
    )


async def update_rows(
    session: AsyncSession, table: Table, key: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Update rows by ``key`` (each dict holds the key and the same columns to set), in
    one statement."""
    if not rows:
        return
    if not is_postgresql(session):
        await session.execute(
            update(table).where(table.c[key] == bindparam("b_key")),
            [{("b_key" if k == key else k): v for k, v in row.items()} for row in rows],
        )
        return
    columns = columns_of(table, rows)
    statement = _update_sql(table, key, tuple(c for c in columns if c != key))
    ordered = [columns[key], *(v for c, v in columns.items() if c != key)]
    await session.execute(statement, {f"p{n}": values for n, values in enumerate(ordered)})


_HELD = "rrg_bulk_held_inserts"


@asynccontextmanager
async def one_statement(session: AsyncSession) -> AsyncIterator[None]:
    """Hold the ``insert_rows`` made inside the block and send them when it ends: on
    PostgreSQL as one statement (a ``WITH`` of inserts: foreign keys are checked at its
    end, so parents and children may travel together), elsewhere one per table, in order.
    Reads inside the block do not see the held rows; an exception discards them. A block
    inside another joins it. Large batches still go one per table (COPY is cheaper)."""
    if _HELD in session.info:
        yield
        return
    held: list[tuple[Table, Sequence[dict[str, Any]]]] = []
    session.info[_HELD] = held
    try:
        yield
    finally:
        session.info.pop(_HELD, None)
    if not held:
        return
    if (
        not is_postgresql(session)
        or len(held) == 1
        or any(len(rows) >= COPY_MIN_ROWS for _, rows in held)
    ):
        for table, rows in held:
            await insert_rows(session, table, rows)
        return
    shapes = tuple((table, tuple(rows[0]), len(rows) == 1) for table, rows in held)
    params: dict[str, Any] = {}
    for n, (table, rows) in enumerate(held):
        params.update(_insert_parameters(table, rows, f"w{n}p"))
    # The transaction's NOTIFY rides along: these writes are most often its last, and the
    # commit would otherwise spend a round trip of its own on it.
    notify = signals.notify_with(session)
    await session.execute(_inserts_sql(shapes, notify is not None), {**params, **(notify or {})})


@lru_cache(maxsize=64)
def _inserts_sql(
    shapes: tuple[tuple[Table, tuple[str, ...], bool], ...], notify: bool
) -> TextClause:
    """One ``WITH`` of the inserts (each shape: table, columns, one row or more); with
    ``notify``, every insert is a part of it (each runs whether read or not) and the
    statement is the NOTIFY (``signals.NOTIFY_SQL``)."""
    parts = [
        _insert_part(table, columns, f"w{n}p", one=one)
        for n, (table, columns, one) in enumerate(shapes)
    ]
    *first, last = [*parts, signals.NOTIFY_SQL] if notify else parts
    ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(first))
    return text(f"WITH {ctes} {last}")
