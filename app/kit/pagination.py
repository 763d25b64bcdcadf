"""Keyset pagination: the one helper behind every list.

A list declares its order once, as a sequence of keys: an SQL expression, the kind of value
it holds, its direction, whether it may be NULL (NULLs come last). A page is the rows after
the cursor in that order, plus one more row to tell whether there is a next page. The cursor
is the last row's key values, as the database returned them, tagged with the order's name and
sent as base64url JSON.

Decoding checks the tag, the length and every value against its key's declared kind, so a
forged or mangled cursor is a 422 naming ``cursor`` and never reaches the database as a value
it cannot take (a naive time, a 65-bit integer, an infinite number, a NUL in a string, a time
beyond year 9999).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn

from fastapi import Query
from sqlalchemy import ColumnElement, Select, and_, false, literal, or_, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app.errors import InvalidInput

Kind = Literal["datetime", "uuid", "int", "float", "str", "bool"]

MAX_LIMIT = 200
# Long enough for any cursor this module writes (a few keys of bounded size).
MAX_CURSOR_LENGTH = 1024
_INT64 = range(-(2**63), 2**63)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (at most 200)")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="`next_cursor` of the previous page; omit for the first page",
    ),
]


def _refuse(reason: str) -> NoReturn:
    raise InvalidInput("cursor", reason, location="query")


@dataclass(frozen=True)
class Key:
    """One sort key of an order."""

    expr: ColumnElement[Any] | QueryableAttribute[Any]
    kind: Kind
    descending: bool = False
    nullable: bool = False  # NULLs sort after every value

    def sort(self) -> ColumnElement[Any]:
        ordered = self.expr.desc() if self.descending else self.expr.asc()
        return ordered.nulls_last() if self.nullable else ordered

    def beyond(self, value: Any) -> ColumnElement[bool]:
        """Rows strictly after ``value`` in this key alone."""
        if value is None:
            return false()  # NULLs come last: nothing follows them
        bound = literal(value, self.expr.type)
        after = self.expr < bound if self.descending else self.expr > bound
        return or_(after, self.expr.is_(None)) if self.nullable else after

    def same(self, value: Any) -> ColumnElement[bool]:
        return self.expr.is_(None) if value is None else self.expr == literal(value, self.expr.type)

    def decode(self, position: int, value: Any) -> Any:
        """A cursor value checked against this key's kind, as the database needs it."""
        where = f"value {position}"
        if value is None:
            if self.nullable:
                return None
            _refuse(f"{where} may not be null")
        if self.kind == "bool":
            if type(value) is not bool:
                _refuse(f"{where} must be a boolean")
            return value
        if self.kind == "int":
            if type(value) is not int or value not in _INT64:
                _refuse(f"{where} must be a 64-bit integer")
            return value
        if self.kind == "float":
            # JSON reads 1e999 as infinity; no column holds one.
            if type(value) not in (int, float) or not math.isfinite(value):
                _refuse(f"{where} must be a finite number")
            return float(value)
        if type(value) is not str:
            _refuse(f"{where} must be a string")
        if self.kind == "str":
            if "\x00" in value:
                _refuse(f"{where} contains a NUL character")
            try:
                value.encode()
            except UnicodeEncodeError:
                _refuse(f"{where} is not valid Unicode")
            return value
        if self.kind == "uuid":
            try:
                return uuid.UUID(value)
            except ValueError:
                _refuse(f"{where} must be a UUID")
        return _aware_time(where, value)

    def encode(self, value: Any) -> Any:
        if value is None or self.kind in ("bool", "int", "float", "str"):
            return value
        if self.kind == "uuid":
            return str(value)
        assert isinstance(value, datetime)
        return value.isoformat()


def _aware_time(where: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _refuse(f"{where} must be an ISO 8601 time")
    if parsed.utcoffset() is None:
        _refuse(f"{where} must carry a UTC offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        _refuse(f"{where} lies outside the years 1 to 9999 in UTC")


class Order:
    """A list's sort order: its keys, ending in a unique one so the order is total."""

    def __init__(self, name: str, *keys: Key) -> None:
        assert keys, "an order needs at least one key"
        self.name = name
        self.keys = keys

    def order_by(self) -> list[ColumnElement[Any]]:
        return [key.sort() for key in self.keys]

    def after(self, values: Sequence[Any]) -> ColumnElement[bool]:
        """Rows strictly after the row whose key values are ``values``."""
        keys = self.keys
        if len({k.descending for k in keys}) == 1 and not any(k.nullable for k in keys):
            # One row comparison: the database walks a single range of the matching index.
            left = tuple_(*(k.expr for k in keys))
            right = tuple_(*values, types=[k.expr.type for k in keys])
            return left < right if keys[0].descending else left > right
        # Mixed directions or NULLs: the lexicographic expansion, key by key.
        alternatives = []
        for i, key in enumerate(keys):
            equal = [k.same(v) for k, v in zip(keys[:i], values[:i], strict=True)]
            alternatives.append(and_(*equal, key.beyond(values[i])))
        return or_(*alternatives)

    def encode(self, values: Sequence[Any]) -> str:
        data = [self.name, *(k.encode(v) for k, v in zip(self.keys, values, strict=True))]
        raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str) -> list[Any]:
        if len(cursor) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(cursor):
            _refuse("not a cursor (base64url expected)")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            data = json.loads(raw.decode(), parse_constant=_no_constants)
        except (binascii.Error, ValueError, RecursionError):
            _refuse("not a cursor (malformed)")
        if not isinstance(data, list) or len(data) != len(self.keys) + 1:
            _refuse("not a cursor of this list")
        if data[0] != self.name:
            _refuse("a cursor of another list or sort order")
        return [
            key.decode(i, v) for i, (key, v) in enumerate(zip(self.keys, data[1:], strict=True), 1)
        ]


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def page_query(
    query: Select[*tuple[Any, ...]], order: Order, *, limit: int, cursor: str | None
) -> Select[*tuple[Any, ...]]:
    """``query`` limited to one page after ``cursor``, each row ending in its key values."""
    if cursor:
        query = query.where(order.after(order.decode(cursor)))
    keyed = query.add_columns(*(k.expr for k in order.keys))
    return keyed.order_by(*order.order_by()).limit(limit + 1)


async def paginate_rows(
    session: AsyncSession,
    query: Select[*tuple[Any, ...]],
    order: Order,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[tuple[Any, ...]], str | None]:
    """One page of ``query``'s rows (every selected column) in ``order`` after ``cursor``,
    and the cursor of the next page (None on the last one)."""
    paged = page_query(query, order, limit=limit, cursor=cursor)
    rows = (await session.execute(paged)).all()
    width = len(order.keys)
    items = [tuple(row[:-width]) for row in rows[:limit]]
    next_cursor = order.encode(rows[limit - 1][-width:]) if len(rows) > limit else None
    return items, next_cursor


async def paginate(
    session: AsyncSession,
    query: Select[Any],
    order: Order,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """One page of ``query``'s first selected entity in ``order`` after ``cursor``, and the
    cursor of the next page (None on the last one)."""
    rows, next_cursor = await paginate_rows(session, query, order, limit=limit, cursor=cursor)
    return [row[0] for row in rows], next_cursor
