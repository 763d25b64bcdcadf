from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType


class Mineral(Base):
    """The seeded catalogue of critical minerals (reference data)."""

    __tablename__ = "minerals"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name_en: Mapped[str] = mapped_column(String(100))
    name_ja: Mapped[str] = mapped_column(String(100))
    group: Mapped[str] = mapped_column(String(32))
    hs_codes: Mapped[list[Any]] = mapped_column(JSONType, default=list)
