from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType
from app.models_base import IdMixin


class OutboxEvent(IdMixin, Base):
    """An event to publish to the ministries' webhooks, written in the transaction of
    the change that caused it (the transactional outbox)."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_undispatched", "created_at", "dispatched_at"),)

    type: Mapped[str] = mapped_column(String(48))
    incident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
