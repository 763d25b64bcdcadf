from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType
from app.models_base import IdMixin


class TimelineEvent(IdMixin, Base):
    """An immutable, hash-chained record of one change to an incident (SPEC §5)."""

    __tablename__ = "timeline_events"
    __table_args__ = (
        UniqueConstraint("incident_id", "seq"),
        CheckConstraint("actor_kind IN ('user', 'token', 'system')", name="actor_kind"),
    )

    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id"))
    seq: Mapped[int]
    at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(String(8))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)
    actor_token_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    type: Mapped[str] = mapped_column(String(48))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
