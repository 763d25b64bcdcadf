"""Constants written into SQL when a statement is compiled, and cached with it.

A bound value is rewritten at every execution when it expands (``column IN (list)``, or
``literal_execute``); and as a bind parameter, a constant is unknown to the generic plan
PostgreSQL switches a prepared statement to after five runs, which then cannot prove a
partial index's predicate. Only for constants of the code: they are quoted here, not by a
driver.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, Integer, String, literal_column


def sql_literal(value: str | int) -> str:
    """A constant as SQL text: an integer as it is, a string in single quotes."""
    if isinstance(value, int):
        return str(int(value))
    if "'" in value or "\\" in value:
        raise ValueError(f"{value!r} is not a plain constant")
    return f"'{value}'"


def constant(value: str | int) -> ColumnElement[str | int]:
    """One constant written into the statement."""
    return literal_column(sql_literal(value), Integer if isinstance(value, int) else String)


def constants(values: Iterable[str]) -> list[ColumnElement[str | int]]:
    """Constants for ``column IN (…)``, written into the statement."""
    return [constant(value) for value in values]
