from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.actions.states import TERMINAL
from app.actions.vocabulary import KINDS, OWNING_MINISTRIES, PRIORITIES, STATUSES
from app.auth.models import User
from app.db import Base
from app.incidents.models import Incident
from app.kit.sql import constants, sql_literal
from app.models_base import IdMixin, TimestampMixin

_OPEN_SQL = "status NOT IN (" + ", ".join(sql_literal(s) for s in sorted(TERMINAL)) + ")"
_ESCALATABLE_SQL = _OPEN_SQL + " AND escalation_level < 3"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Action(IdMixin, TimestampMixin, Base):
    __tablename__ = "actions"
    __table_args__ = (
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("kind", KINDS), name="kind"),
        CheckConstraint(_in("owning_ministry", OWNING_MINISTRIES), name="owning_ministry"),
        CheckConstraint(_in("priority", PRIORITIES), name="priority"),
        CheckConstraint("escalation_level BETWEEN 0 AND 3", name="escalation_level"),
        Index("ix_actions_incident_id_status", "incident_id", "status"),
        Index("ix_actions_assignee_id_due_at", "assignee_id", "due_at"),
        Index("ix_actions_queue", "due_at", "id"),
        # Open actions by due time: the overdue queue and the escalation sweep read only
        # these rows, so their cost grows with open work, not with history.
        Index(
            "ix_actions_open_due_at",
            "due_at",
            postgresql_where=text(_OPEN_SQL),
            sqlite_where=text(_OPEN_SQL),
        ),
        # What the escalation sweep scans: open actions still below the top level.
        Index(
            "ix_actions_escalatable_due_at",
            "due_at",
            postgresql_where=text(_ESCALATABLE_SQL),
            sqlite_where=text(_ESCALATABLE_SQL),
        ),
    )

    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id"))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(32))
    owning_ministry: Mapped[str] = mapped_column(String(8))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), default=None)
    priority: Mapped[str] = mapped_column(String(8), default="medium")
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    escalation_level: Mapped[int] = mapped_column(default=0)
    # Incremented when due_at changes: the escalation ladder restarts from the new deadline.
    ladder_round: Mapped[int] = mapped_column(default=0)
    blocked_reason: Mapped[str | None] = mapped_column(Text, default=None)
    outcome: Mapped[str | None] = mapped_column(Text, default=None)
    # Why it was rejected or cancelled.
    closing_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(default=1)

    incident: Mapped[Incident] = relationship(lazy="raise")
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="raise")
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id], lazy="raise")
    approvals: Mapped[list[ActionApproval]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="ActionApproval.at"
    )

    __mapper_args__ = {"version_id_col": version}


class ActionApproval(Base):
    """One co-lead ministry's approval of an action (JOINT actions need both)."""

    __tablename__ = "action_approvals"

    action_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("actions.id", ondelete="CASCADE"), primary_key=True
    )
    ministry_code: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]

    user: Mapped[User] = relationship(lazy="raise")


def is_open() -> ColumnElement[bool]:
    """Not terminal, spelled as the partial indexes' predicate, constants inline: as bind
    parameters, the generic plan PostgreSQL adopts for a prepared statement after five runs
    could not prove the index predicate and would read every past-due action."""
    return Action.status.not_in(constants(sorted(TERMINAL)))
