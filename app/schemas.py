"""Shared API shapes: strict input models, the list page, shared validators."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from app.kit.types import unsafe_value

T = TypeVar("T")
_TIMEZONES = available_timezones()


def _without_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """In the contract, a field that may not be cleared does not admit null."""
    for name in getattr(model, "not_nullable", ()):
        field = schema.get("properties", {}).get(name, {})
        branches = [b for b in field.get("anyOf", []) if b.get("type") != "null"]
        if "anyOf" in field and len(branches) == 1:
            field.pop("anyOf")
            field.update(branches[0])
        elif "anyOf" in field:
            field["anyOf"] = branches


class InputModel(BaseModel):
    """Every request body and every object inside one (422 naming the field): unknown
    fields, NaN and infinities, NUL characters and invalid Unicode in text, and integers
    beyond 64 bits are refused; so is null for the fields in ``not_nullable`` (a PATCH
    may omit them but not clear them)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra=_without_null)
    not_nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_nullable:
            raise ValueError("may not be null")
        return value

    # After each field's own validation: a nested input model has checked its own fields
    # (so the error names the innermost field); lists and dicts of plain values are walked.
    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        reason = unsafe_value(value)
        if reason is not None:
            raise ValueError(reason)
        return value


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def check_timezone(value: str | None) -> str | None:
    """A field validator: an IANA time zone name (or None)."""
    if value is not None and value not in _TIMEZONES:
        raise ValueError("not an IANA time zone")
    return value


def _encode(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def json_text(data: dict[str, Any]) -> str:
    """Data as JSON text, times as ISO 8601 and ids as strings."""
    return json.dumps(data, default=_encode)


class PlainJSON(dict[str, Any]):
    """Data already as a JSON column gives it back (what ``json_safe`` returns): passing it
    through ``json_safe`` again costs nothing."""


class _NotPlain(Exception):
    """A value ``_plain`` leaves to the JSON round trip."""


_AS_IS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back, for the shapes events carry (strings, numbers,
    lists, dicts with string keys, times and ids); anything else raises ``_NotPlain``."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise _NotPlain
        return {key: _plain(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if kind is datetime:
        return value.isoformat()
    if isinstance(value, uuid.UUID):  # the drivers' own UUID types included
        return str(value)
    raise _NotPlain


def json_safe(data: dict[str, Any]) -> PlainJSON:
    """Plain JSON data, exactly as a JSON column gives it back (times as ISO 8601, ids as
    strings): what is hashed, stored and sent is the same. The common shapes are converted
    directly; anything else makes the round trip through JSON text."""
    if isinstance(data, PlainJSON):
        return data
    try:
        return PlainJSON(_plain(data))
    except _NotPlain:
        return PlainJSON(json.loads(json_text(data)))
