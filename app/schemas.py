"""Shared API shapes: strict input models and the list page."""

from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from app.errors import InvalidInput

T = TypeVar("T")


class InputModel(BaseModel):
    """Every request body: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """Decode an opaque cursor made by :func:`encode_cursor` holding ``size`` values."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor", "malformed cursor", location="query") from exc
    if not isinstance(values, list) or len(values) != size:
        raise InvalidInput("cursor", "malformed cursor", location="query")
    return values
