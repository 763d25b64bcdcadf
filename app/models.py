"""Imports every model so the metadata is complete (for Alembic and tests)."""

from app.auth.models import ApiToken, User
from app.db import Base
from app.ministries.models import Ministry

metadata = Base.metadata

__all__ = ["ApiToken", "Base", "Ministry", "User", "metadata"]
