"""Roles are ordered; each includes the one before."""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "responder", "lead", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "responder", "lead", "admin")
LANGUAGES = ("en", "ja")


def rank(role: str) -> int:
    return ROLES.index(role)


def at_least(role: str, minimum: Role) -> bool:
    return rank(role) >= rank(minimum)
