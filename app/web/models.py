"""Web sign-in state: server-side sessions and sign-in attempts (for rate limiting)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models_base import IdMixin


class WebSession(IdMixin, Base):
    """A signed-in browser. Only a hash of the cookie's token is stored, so a copy of the
    database signs nobody in; deleting the row signs the browser out everywhere."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class SigninAttempt(IdMixin, Base):
    """A failed sign-in, counted per account and per address over a window. Kept in the
    database so every replica counts the same attempts."""

    __tablename__ = "signin_attempts"
    __table_args__ = (
        Index("ix_signin_attempts_email_at", "email", "at"),
        Index("ix_signin_attempts_address_at", "address", "at"),
    )

    email: Mapped[str] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
