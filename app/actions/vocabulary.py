"""The response-action vocabularies (SPEC §3), defined once for the API and the database."""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal[
    "stockpile_release",
    "alternative_sourcing",
    "joint_procurement",
    "financing",
    "permit_fast_track",
    "diplomatic_outreach",
    "recycling",
    "demand_management",
    "information_sharing",
    "other",
]
OwningMinistry = Literal["DOE", "METI", "JOINT"]
Priority = Literal["high", "medium", "low"]
ActionStatus = Literal[
    "proposed", "approved", "in_progress", "blocked", "completed", "rejected", "cancelled"
]

KINDS: tuple[str, ...] = get_args(Kind)
OWNING_MINISTRIES: tuple[str, ...] = get_args(OwningMinistry)
PRIORITIES: tuple[str, ...] = get_args(Priority)
STATUSES: tuple[str, ...] = get_args(ActionStatus)


def ministries_of(owning_ministry: str) -> tuple[str, ...]:
    """The ministries an action belongs to: its own, or both co-leads for JOINT."""
    from app.ministries.models import CO_LEAD_CODES

    return CO_LEAD_CODES if owning_ministry == "JOINT" else (owning_ministry,)
