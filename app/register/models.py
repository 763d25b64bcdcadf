from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType
from app.models_base import IdMixin


def _pct(column: str) -> str:
    return f"{column} >= 0 AND {column} <= 100"


class DependencyProfile(IdMixin, Base):
    """One version of a mineral's dependency profile for one co-lead country.

    Versions are never changed: a new one is added and becomes current (``is_current``),
    so the history of every figure stays readable.
    """

    __tablename__ = "dependency_profiles"
    __table_args__ = (
        UniqueConstraint("mineral_code", "country", "version"),
        # At most one current version per (mineral, country): two concurrent writers of
        # the next version cannot both succeed.
        Index(
            "ix_dependency_profiles_current",
            "mineral_code",
            "country",
            unique=True,
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
        CheckConstraint(_pct("net_import_reliance_pct"), name="reliance_pct"),
        CheckConstraint(
            "consumption_tonnes_per_year >= 0 AND domestic_capacity_tonnes_per_year >= 0 "
            "AND allied_capacity_tonnes_per_year >= 0 AND stockpile_tonnes >= 0 "
            "AND days_of_cover >= 0",
            name="non_negative",
        ),
    )

    mineral_code: Mapped[str] = mapped_column(ForeignKey("minerals.code"))
    country: Mapped[str] = mapped_column(String(2))
    version: Mapped[int]
    is_current: Mapped[bool]
    as_of: Mapped[date]
    net_import_reliance_pct: Mapped[float]
    consumption_tonnes_per_year: Mapped[float]
    # [{"country": "CN", "share_pct": 94.0}, ...]: shares of imports, largest first.
    suppliers: Mapped[list[Any]] = mapped_column(JSONType)
    domestic_capacity_tonnes_per_year: Mapped[float]
    allied_capacity_tonnes_per_year: Mapped[float]
    stockpile_tonnes: Mapped[float]
    days_of_cover: Mapped[float]
    sectors: Mapped[list[str]] = mapped_column(JSONType)
    sources: Mapped[list[Any]] = mapped_column(JSONType)
    # Figures made up for a demonstration or an exercise, not official statistics.
    illustrative: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime]
    recorded_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))


class ConcernList(Base):
    """A co-lead ministry's countries of concern (a missing row is the empty list,
    version 0)."""

    __tablename__ = "concern_lists"

    ministry_code: Mapped[str] = mapped_column(String(16), primary_key=True)
    countries: Mapped[list[str]] = mapped_column(JSONType)
    version: Mapped[int]
    updated_at: Mapped[datetime]
    updated_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))


class ConcernListChange(IdMixin, Base):
    """Who changed a ministry's list of countries of concern, when, and how."""

    __tablename__ = "concern_list_changes"
    __table_args__ = (Index("ix_concern_list_changes_ministry_code_at", "ministry_code", "at"),)

    ministry_code: Mapped[str] = mapped_column(String(16))
    version: Mapped[int]
    at: Mapped[datetime]
    changed_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    added: Mapped[list[str]] = mapped_column(JSONType)
    removed: Mapped[list[str]] = mapped_column(JSONType)
    countries: Mapped[list[str]] = mapped_column(JSONType)
