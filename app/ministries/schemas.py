from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas import InputModel, check_timezone

CODE_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{1,15}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"


class MinistryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    name_ja: str
    country: str
    timezone: str
    kind: Literal["co_lead", "partner"]


class MinistryCreate(InputModel):
    """A partner organisation (the co-lead ministries are DOE and METI only)."""

    code: str = Field(pattern=CODE_PATTERN, description="Short code, stored upper-case")
    name: str = Field(min_length=1, max_length=200)
    name_ja: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The Japanese name; `name` if omitted",
    )
    country: str = Field(pattern=COUNTRY_PATTERN, description="ISO 3166 alpha-2")
    timezone: str = Field(description="IANA time zone, e.g. Asia/Tokyo")

    _tz = field_validator("timezone")(check_timezone)


class MinistryUpdate(InputModel):
    not_nullable = frozenset({"name", "name_ja", "country", "timezone"})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    name_ja: str | None = Field(default=None, min_length=1, max_length=200)
    country: str | None = Field(default=None, pattern=COUNTRY_PATTERN)
    timezone: str | None = None

    _tz = field_validator("timezone")(check_timezone)
