from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType
from app.models_base import IdMixin


class EscalationPolicy(Base):
    """SLA durations for one severity, in seconds (SPEC §4)."""

    __tablename__ = "escalation_policies"

    severity: Mapped[str] = mapped_column(String(4), primary_key=True)
    triage_within_seconds: Mapped[int] = mapped_column(Integer)
    level2_after_seconds: Mapped[int] = mapped_column(Integer)
    level3_after_seconds: Mapped[int] = mapped_column(Integer)
    update_every_seconds: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    # Not a foreign key: this reference row outlives users (the change log keeps who).
    updated_by_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


class EscalationPolicyChange(IdMixin, Base):
    """Who changed a policy, when, and from what to what."""

    __tablename__ = "escalation_policy_changes"

    severity: Mapped[str] = mapped_column(String(4), index=True)
    changed_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]
    before: Mapped[dict[str, Any]] = mapped_column(JSONType)
    after: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Escalation(IdMixin, Base):
    """The ledger: one row per (item, ladder round, level) ever escalated.

    The unique constraint is the database's guarantee that each level of each item is
    escalated exactly once, whatever the number of sweepers.
    """

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("item_type", "item_id", "round", "level"),)

    item_type: Mapped[str] = mapped_column(String(16))  # action | triage | stale
    item_id: Mapped[uuid.UUID]
    round: Mapped[int]
    level: Mapped[int]
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime]
    recipients: Mapped[list[Any]] = mapped_column(JSONType, default=list)
