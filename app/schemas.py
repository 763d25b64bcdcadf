"""Shared API shapes: strict input models, the list page, shared validators."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Generic, TypeVar
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")
_TIMEZONES = available_timezones()


class InputModel(BaseModel):
    """Every request body: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")


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


def json_safe(data: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON data, exactly as a JSON column gives it back (times as ISO 8601, ids as
    strings): what is hashed, stored and sent is the same."""
    safe: dict[str, Any] = json.loads(json.dumps(data, default=_encode))
    return safe
