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
    the change that caused it (the transactional outbox); its deliveries are written in
    the same transaction (app.webhooks.fanout)."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_created_at", "created_at"),)

    type: Mapped[str] = mapped_column(String(48))
    incident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    # The incident as it was when the event happened: filters and redaction read this.
    incident_key: Mapped[str | None] = mapped_column(String(16), default=None)
    incident_title: Mapped[str | None] = mapped_column(String(300), default=None)
    severity: Mapped[str | None] = mapped_column(String(4), default=None)
    tlp: Mapped[str | None] = mapped_column(String(16), default=None)
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    reporter_ministry_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # Events about the webhook machinery: the ministry whose subscriptions receive them,
    # or the one subscription (a test event).
    ministry_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ministries.id"), default=None)
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
