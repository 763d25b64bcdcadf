"""SQL pieces shared by queries."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, String, literal_column


def constants(values: Iterable[str]) -> list[ColumnElement[str]]:
    """Strings written into a statement when it is compiled, and cached with it: ``column
    IN (list)`` otherwise binds an expanding parameter, which is rewritten into one
    parameter per value at every execution. Only for constants of the code (quoted here, not
    by a driver)."""
    written: list[ColumnElement[str]] = []
    for value in values:
        if "'" in value or "\\" in value:
            raise ValueError(f"{value!r} is not a plain constant")
        written.append(literal_column(f"'{value}'", String))
    return written
