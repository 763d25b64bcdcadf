from __future__ import annotations

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models_base import IdMixin

CO_LEAD_CODES = ("DOE", "METI")


class Ministry(IdMixin, Base):
    __tablename__ = "ministries"
    __table_args__ = (CheckConstraint("kind IN ('co_lead', 'partner')", name="kind"),)

    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_ja: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    timezone: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))

    @property
    def is_co_lead(self) -> bool:
        return self.kind == "co_lead"
