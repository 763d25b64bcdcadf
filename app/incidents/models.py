from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONType
from app.incidents.vocabulary import CATEGORIES, SEVERITIES, TLP_MARKINGS
from app.models_base import IdMixin, TimestampMixin


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Counter(Base):
    """Named counters incremented inside the transaction: incident numbers on SQLite
    (PostgreSQL draws them from the ``incident_numbers`` sequence instead)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Incident(IdMixin, TimestampMixin, Base):
    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(_in("tlp", TLP_MARKINGS), name="tlp"),
        CheckConstraint(f"severity IS NULL OR {_in('severity', SEVERITIES)}", name="severity"),
        CheckConstraint(_in("category", CATEGORIES), name="category"),
        CheckConstraint(
            "supply_share_affected_pct IS NULL OR "
            "(supply_share_affected_pct >= 0 AND supply_share_affected_pct <= 100)",
            name="supply_share",
        ),
        Index("ix_incidents_status_reported_at", "status", "reported_at", "id"),
        Index("ix_incidents_reported_at", "reported_at", "id"),
        Index("ix_incidents_updated_at", "updated_at", "id"),
        Index("ix_incidents_category_reported_at", "category", "reported_at"),
        Index("ix_incidents_status_last_activity_at", "status", "last_activity_at"),
        Index("ix_incidents_priority_score", "priority_score", "id"),
    )

    number: Mapped[int] = mapped_column(unique=True)
    key: Mapped[str] = mapped_column(String(16), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(32))
    origin_country: Mapped[str | None] = mapped_column(String(2), default=None)
    affected_sectors: Mapped[list[str]] = mapped_column(JSONType, default=list)
    estimated_shortfall_tonnes_per_month: Mapped[float | None] = mapped_column(default=None)
    supply_share_affected_pct: Mapped[float | None] = mapped_column(default=None)
    days_of_cover: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    price_change_pct: Mapped[float | None] = mapped_column(default=None)
    effective_at: Mapped[datetime | None] = mapped_column(default=None)
    expected_duration_days: Mapped[int | None] = mapped_column(default=None)
    sources: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    tlp: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str | None] = mapped_column(String(4), default=None)
    status: Mapped[str] = mapped_column(String(16))
    reporter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # The reporter's ministry at report time (AMBER+STRICT visibility reads it).
    reporter_ministry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ministries.id"))
    doe_owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id"), index=True, default=None
    )
    meti_owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id"), index=True, default=None
    )
    resolution_summary: Mapped[str | None] = mapped_column(Text, default=None)
    # Incremented at every resolution: sign-offs count only for the current one.
    resolution_round: Mapped[int] = mapped_column(default=0)
    rejection_reason: Mapped[str | None] = mapped_column(Text, default=None)
    duplicate_of_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("incidents.id"), default=None
    )
    reported_at: Mapped[datetime]
    triaged_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(default=1)
    # Head of the tamper-evident timeline chain (see app.timeline).
    event_count: Mapped[int] = mapped_column(default=0)
    last_event_hash: Mapped[str] = mapped_column(String(64), default="")
    # Escalation state (see app.escalation): the triage ladder reached (0-2), the last
    # timeline activity by a person, and the stale-update reminders sent.
    triage_level: Mapped[int] = mapped_column(default=0)
    last_activity_at: Mapped[datetime | None] = mapped_column(default=None)
    stale_reminded_at: Mapped[datetime | None] = mapped_column(default=None)
    stale_reminders: Mapped[int] = mapped_column(default=0)
    # Priority (app.priority): the score and its breakdown, stored when an input changes.
    # 0 with no breakdown until first computed.
    priority_score: Mapped[float] = mapped_column(default=0.0, server_default="0")
    priority_breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    # When it was last computed: the time-based rescoring finds the scores whose
    # time-to-effect component can still move (app.priority.service.rescore_by_time).
    priority_computed_at: Mapped[datetime | None] = mapped_column(default=None)

    mineral_links: Mapped[list[IncidentMineral]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="IncidentMineral.mineral_code"
    )
    participant_links: Mapped[list[IncidentParticipant]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="IncidentParticipant.added_at"
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def minerals(self) -> list[str]:
        return [link.mineral_code for link in self.mineral_links]


class IncidentMineral(Base):
    __tablename__ = "incident_minerals"
    __table_args__ = (Index("ix_incident_minerals_mineral_code", "mineral_code", "incident_id"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    mineral_code: Mapped[str] = mapped_column(ForeignKey("minerals.code"), primary_key=True)


class IncidentParticipant(Base):
    __tablename__ = "incident_participants"
    __table_args__ = (Index("ix_incident_participants_user_id", "user_id", "incident_id"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    added_at: Mapped[datetime]
    added_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)


class IncidentSignoff(IdMixin, Base):
    __tablename__ = "incident_signoffs"
    __table_args__ = (
        Index(
            "ix_incident_signoffs_incident_id_round",
            "incident_id",
            "resolution_round",
            "ministry_code",
        ),
    )

    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    resolution_round: Mapped[int]
    ministry_code: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text, default=None)
