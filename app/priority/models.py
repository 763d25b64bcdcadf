from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType
from app.models_base import IdMixin

WEIGHTS_NAME = "default"


class PriorityWeights(Base):
    """The weights in force (one row; while it is missing the defaults apply, version 0)."""

    __tablename__ = "priority_weights"

    name: Mapped[str] = mapped_column(String(16), primary_key=True, default=WEIGHTS_NAME)
    components: Mapped[dict[str, Any]] = mapped_column(JSONType)
    sectors: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int]
    updated_at: Mapped[datetime]
    updated_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))


class PriorityWeightsChange(IdMixin, Base):
    """Who changed the weights, when, from what to what."""

    __tablename__ = "priority_weights_changes"

    version: Mapped[int] = mapped_column(index=True)
    at: Mapped[datetime]
    changed_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    before: Mapped[dict[str, Any]] = mapped_column(JSONType)
    after: Mapped[dict[str, Any]] = mapped_column(JSONType)


class PriorityRecomputeJob(IdMixin, Base):
    """A recompute too big for the request that caused it (a weights change, a profile
    import): the worker works through the open incidents (on ``minerals``; null: all) in id
    order, one batch per transaction, ``after_id`` recording how far it got."""

    __tablename__ = "priority_recompute_jobs"

    reason: Mapped[str] = mapped_column(String(64))
    minerals: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    requested_at: Mapped[datetime]
    after_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    recomputed: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
