from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, event, func
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, relationship

from app import signals
from app.db import Base
from app.ministries.models import Ministry
from app.models_base import IdMixin, TimestampMixin


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'responder', 'lead', 'admin')", name="role"),
        CheckConstraint("language IN ('en', 'ja')", name="language"),
        # Emails are stored lower-cased, so a plain unique index is case-insensitive.
        CheckConstraint("email = lower(email)", name="email_lower"),
        Index("ix_users_ministry_id_role", "ministry_id", "role"),
    )

    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    ministry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ministries.id"))
    role: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2), default="en")
    timezone: Mapped[str] = mapped_column(String(64))
    co_chair: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)

    ministry: Mapped[Ministry] = relationship(lazy="joined", innerjoin=True)


class ApiToken(IdMixin, Base):
    __tablename__ = "api_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the token: tokens carry 256 bits of entropy, so a fast hash is safe
    # and lets the lookup use an index.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


# The directory walks users in this order (display name in any case, then id), so a page
# is a range of this index, filtered as it goes (SPEC §1).
Index("ix_users_directory", func.lower(User.display_name), User.id)


# What a caller's principal is made of (app.auth.cache keeps it): a transaction that changes
# one of these rows announces it, so at its commit every process drops its cached principals.
PRINCIPAL_ROWS = (User, ApiToken, Ministry)
PRINCIPAL_TABLES = frozenset(model.__tablename__ for model in PRINCIPAL_ROWS)


@event.listens_for(Session, "before_flush")
def _announce_changed_principals(session: Session, _context: object, _instances: object) -> None:
    if any(isinstance(row, PRINCIPAL_ROWS) for row in (*session.dirty, *session.deleted)):
        signals.announce(session, principals=True)


@event.listens_for(Session, "do_orm_execute")
def _announce_bulk_principal_changes(state: ORMExecuteState) -> None:
    # UPDATE and DELETE statements sent through a session. A token's last use is written on
    # the connection instead (auth.service.touch_token): it changes nothing a principal holds.
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in PRINCIPAL_TABLES:
            signals.announce(state.session, principals=True)
