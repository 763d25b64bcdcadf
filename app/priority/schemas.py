from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, field_validator

from app.incidents.schemas import UserRef
from app.incidents.vocabulary import SECTORS, Sector
from app.priority.score import COMPONENTS
from app.schemas import InputModel

ComponentName = Literal[
    "severity",
    "supply_share",
    "days_of_cover",
    "concern_dependence",
    "sector_criticality",
    "time_to_effect",
]
assert get_args(ComponentName) == COMPONENTS

Weight = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
Criticality = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class WeightsIn(InputModel):
    """The whole set of weights (PUT replaces it)."""

    components: dict[ComponentName, Weight] = Field(
        description="Relative weight of each score component (they are normalised to 100)",
        json_schema_extra={"required": list(COMPONENTS)},
    )
    sectors: dict[Sector, Criticality] = Field(
        description="Criticality (0-1) of each sector",
        json_schema_extra={"required": list(SECTORS)},
    )

    @field_validator("components")
    @classmethod
    def _every_component(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [c for c in COMPONENTS if c not in value]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return {c: value[c] for c in COMPONENTS}

    @field_validator("sectors")
    @classmethod
    def _every_sector(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [s for s in SECTORS if s not in value]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return {s: value[s] for s in SECTORS}


class WeightsOut(BaseModel):
    components: dict[str, float]
    sectors: dict[str, float]
    version: int = Field(description="0: the defaults, never changed")
    updated_at: datetime | None
    updated_by: UserRef | None


class WeightsChangeOut(BaseModel):
    version: int
    at: datetime
    changed_by: UserRef
    before: dict[str, Any]
    after: dict[str, Any]
