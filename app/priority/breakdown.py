"""The API shape of a stored priority breakdown (on every incident)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class PriorityComponentOut(BaseModel):
    name: str = Field(
        description="severity, supply_share, days_of_cover, concern_dependence, "
        "sector_criticality or time_to_effect"
    )
    input: Any = Field(description="The value the component read (null: unknown)")
    basis: dict[str, Any] = Field(description="Where the input came from")
    normalised: float = Field(description="0 (least urgent) to 1 (most urgent)")
    weight: float
    contribution: float = Field(description="Points of the score: the contributions add up to it")


class PriorityBreakdown(BaseModel):
    score: float
    weights_version: int
    computed_at: datetime
    components: list[PriorityComponentOut]
