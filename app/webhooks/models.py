"""Webhook subscriptions, their deliveries (one per subscription and outbox event) and each
delivery's attempts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType
from app.incidents.models import _in
from app.incidents.vocabulary import SEVERITIES, TLP_MARKINGS
from app.models_base import IdMixin
from app.webhooks.vocabulary import ATTEMPT_OUTCOMES, DELIVERY_STATUSES

# The dispatcher's claim reads only due work: this partial index holds pending rows only.
PENDING = "status = 'pending'"


class Subscription(IdMixin, Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        CheckConstraint(
            f"min_severity IS NULL OR {_in('min_severity', SEVERITIES)}", name="min_severity"
        ),
        CheckConstraint(_in("max_tlp", TLP_MARKINGS), name="max_tlp"),
        CheckConstraint(
            "disabled_reason IS NULL OR disabled_reason IN ('gone', 'failing')",
            name="disabled_reason",
        ),
        Index("ix_webhook_subscriptions_ministry_id", "ministry_id"),
    )

    ministry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ministries.id"))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    min_severity: Mapped[str | None] = mapped_column(String(4), default=None)
    max_tlp: Mapped[str] = mapped_column(String(16), default="GREEN")
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)
    # Secrets, encrypted (app.webhooks.secrets); the previous one signs too until it expires.
    secret_ciphertext: Mapped[str] = mapped_column(String(512))
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(String(512), default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set by the first failed attempt after a success; a success clears it.
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class Delivery(IdMixin, Base):
    """One outbox event to one subscription. Its id is the `webhook-id` of every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text(PENDING),
            sqlite_where=text(PENDING),
        ),
        Index(
            "ix_webhook_deliveries_subscription_id_created_at",
            "subscription_id",
            "created_at",
            "id",
        ),
        Index("ix_webhook_deliveries_created_at", "created_at", "id"),
        Index("ix_webhook_deliveries_outbox_event_id", "outbox_event_id"),
    )

    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    outbox_event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outbox_events.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime]
    # When the next attempt is due; while an attempt is in flight, when its lease expires
    # (an expired lease makes the row due again). NULL once delivered or failed.
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # Attempts in the current retry schedule (a redelivery starts a new one), and in all.
    tries: Mapped[int] = mapped_column(default=0)
    attempt_count: Mapped[int] = mapped_column(default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Attempt(IdMixin, Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (
        CheckConstraint(_in("outcome", ATTEMPT_OUTCOMES), name="outcome"),
        Index("ix_webhook_attempts_delivery_id_number", "delivery_id", "number"),
    )

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int]
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    response_excerpt: Mapped[str | None] = mapped_column(Text, default=None)


def webhook_id(delivery_id: uuid.UUID) -> str:
    """The Standard Webhooks message id of a delivery (the same for all its attempts)."""
    return f"msg_{delivery_id.hex}"
