"""Column helpers shared by the domain models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

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
            f"The resource has changed (version {row.version}, you sent {expected})"
        )
