"""Column helpers shared by the domain models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy.orm import Mapped, mapped_column

from app import clock
from app.errors import PreconditionFailed


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


class Versioned(Protocol):
    version: int


def check_version(row: Versioned, expected: int) -> None:
    """Optimistic concurrency: the client's If-Match must name the current version."""
    if row.version != expected:
        raise PreconditionFailed(
            f"If-Match does not match the current version of this resource ({row.version})"
        )


def requested_changes(data: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body sets (omitted ones stay as they are). Null for a field that
    may not be cleared was already refused by the body's ``InputModel.not_nullable``."""
    return data.model_dump(exclude_unset=True)


def apply_changes(row: object, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set each value that differs; return (before, after) of what actually changed."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, value in values.items():
        current = getattr(row, name)
        if current != value:
            before[name], after[name] = current, value
            setattr(row, name, value)
    return before, after
