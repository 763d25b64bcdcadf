from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from app.auth.roles import Role
from app.kit.types import Timestamp
from app.schemas import InputModel, check_timezone

Language = Literal["en", "ja"]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str
    ministry: str
    role: Role
    language: Language
    timezone: str
    co_chair: bool
    active: bool
    created_at: datetime
    updated_at: datetime


class UserCreate(InputModel):
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200)
    ministry: str = Field(min_length=1, max_length=16, description="Ministry code, e.g. DOE")
    role: Role = "viewer"
    language: Language = "en"
    timezone: str | None = Field(default=None, description="IANA zone; the ministry's if omitted")
    co_chair: bool = False
    password: str | None = Field(default=None, min_length=12, max_length=200)

    _tz = field_validator("timezone")(check_timezone)


class UserUpdate(InputModel):
    not_nullable = frozenset({"display_name", "role", "language", "timezone", "co_chair", "active"})

    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    language: Language | None = None
    timezone: str | None = None
    co_chair: bool | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=12, max_length=200)

    _tz = field_validator("timezone")(check_timezone)


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the token, to recognise it")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself; shown this once and never again")


class TokenCreate(InputModel):
    name: str = Field(min_length=1, max_length=100)
    expires_at: Timestamp | None = Field(
        default=None,
        description="With a UTC offset. Omitted: never, or when the token making the request "
        "expires if it does (a token cannot create one that outlives it).",
    )


class DirectoryEntry(BaseModel):
    """An active user, as anyone may find them to pick an owner, participant or assignee."""

    id: uuid.UUID
    display_name: str
    ministry: str
    role: Role
    email: str | None = Field(description="Shown to users of the co-lead ministries only")
