from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from app.incidents.vocabulary import Severity, Status, Tlp
from app.minerals.schemas import MineralOut


class ExposureComponentOut(BaseModel):
    name: str = Field(description="net_import_reliance, concern_share, sector_criticality, cover")
    input: Any = Field(description="The profile figure read")
    factor: float = Field(description="Its factor in the product (0-1)")
    basis: dict[str, Any] = Field(default_factory=dict)


class CountryExposureOut(BaseModel):
    country: str
    ministry: str
    exposure: float = Field(description="0-100: 100 x the product of the factors")
    rank: int = Field(description="Rank among this country's profiled minerals")
    profile_version: int
    as_of: date
    illustrative: bool
    components: list[ExposureComponentOut]


class IncidentBrief(BaseModel):
    id: uuid.UUID
    key: str
    title: str
    status: Status
    severity: Severity | None
    tlp: Tlp
    priority_score: float


class VulnerabilityOut(BaseModel):
    rank: int
    mineral: MineralOut
    exposure: float = Field(description="What the list is ranked by (joint or one country's)")
    joint_exposure: float = Field(description="The higher of the two countries' exposures")
    driver: str = Field(description="The country whose exposure is the joint one")
    countries: list[CountryExposureOut]
    open_incidents: list[IncidentBrief] = Field(
        description="Open incidents on the mineral that you may see, highest priority first "
        "(at most 10)"
    )
    open_incident_count: int = Field(description="All open incidents on it that you may see")


class VulnerabilityRanking(BaseModel):
    by: str
    computed_at: datetime
    formula: str
    items: list[VulnerabilityOut]
    unassessed: list[str] = Field(description="Catalogue minerals with no profile yet")
