from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from app.countries import CountryCode
from app.incidents.schemas import Source, UserRef
from app.incidents.vocabulary import Sector
from app.kit.types import CalendarDate
from app.minerals.schemas import MineralOut
from app.schemas import InputModel

# Figures are finite (NaN and infinity refused) and bounded.
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Tonnes = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
Days = Annotated[float, Field(ge=0, le=36_500, allow_inf_nan=False)]
# Shares may add up to a hair over 100 through rounding in the source statistics.
SHARE_SUM_TOLERANCE = 1e-6


class SupplierShare(InputModel):
    country: CountryCode
    share_pct: Percent = Field(description="Share of the country's imports, %")


class ProfileIn(InputModel):
    """One version of a dependency profile (the whole profile: PUT replaces it)."""

    as_of: CalendarDate = Field(description="The date the figures describe")
    net_import_reliance_pct: Percent
    consumption_tonnes_per_year: Tonnes
    suppliers: list[SupplierShare] = Field(
        max_length=50, description="Top supplier countries and their shares of imports"
    )
    domestic_capacity_tonnes_per_year: Tonnes
    allied_capacity_tonnes_per_year: Tonnes
    stockpile_tonnes: Tonnes
    days_of_cover: Days
    sectors: list[Sector] = Field(max_length=8, description="Sectors that depend on it")
    sources: list[Source] = Field(default_factory=list, max_length=50)
    illustrative: bool = Field(
        default=False, description="Figures made up for a demonstration, not official statistics"
    )
    note: Annotated[str, Field(max_length=2000)] = ""

    @field_validator("suppliers")
    @classmethod
    def _shares_add_up(cls, value: list[SupplierShare]) -> list[SupplierShare]:
        seen: set[str] = set()
        for supplier in value:
            if supplier.country in seen:
                raise ValueError(f"{supplier.country} is listed twice")
            seen.add(supplier.country)
        total = sum(s.share_pct for s in value)
        if total > 100 + SHARE_SUM_TOLERANCE:
            raise ValueError(f"supplier shares add up to {total:g}%, more than 100%")
        return value

    @field_validator("sectors")
    @classmethod
    def _sectors_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class SupplierOut(BaseModel):
    country: str
    share_pct: float
    of_concern: bool = Field(description="On the country's ministry's list of countries of concern")


class ProfileOut(BaseModel):
    mineral: str
    country: str
    ministry: str = Field(description="The ministry that keeps this country's profiles")
    version: int
    current: bool
    as_of: date
    net_import_reliance_pct: float
    consumption_tonnes_per_year: float
    suppliers: list[SupplierOut]
    concern_share_pct: float = Field(
        description="Share of imports from countries of concern: the sum of the listed "
        "suppliers' shares that are on the ministry's current list"
    )
    concern_dependence_pct: float = Field(
        description="Share of consumption sourced from countries of concern "
        "(net import reliance x concern share of imports)"
    )
    domestic_capacity_tonnes_per_year: float
    allied_capacity_tonnes_per_year: float
    stockpile_tonnes: float
    days_of_cover: float
    sectors: list[Sector]
    sources: list[Source]
    illustrative: bool
    note: str
    recorded_at: datetime
    recorded_by: UserRef


class CountryProfiles(BaseModel):
    country: str
    ministry: str
    current: ProfileOut | None
    versions: int = Field(description="How many versions are kept (see .../versions)")


class MineralProfilesOut(BaseModel):
    mineral: MineralOut
    countries: list[CountryProfiles]


CoLeadMinistry = Literal["DOE", "METI"]


class ConcernListIn(InputModel):
    countries: list[CountryCode] = Field(max_length=250)

    @field_validator("countries")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class ConcernListOut(BaseModel):
    ministry: str
    country: str = Field(description="The co-lead country whose profiles this list applies to")
    countries: list[str]
    version: int
    updated_at: datetime | None
    updated_by: UserRef | None


class ConcernListChangeOut(BaseModel):
    ministry: str
    version: int
    at: datetime
    changed_by: UserRef
    added: list[str]
    removed: list[str]
    countries: list[str]


class ImportedProfile(BaseModel):
    line: int
    mineral: str
    country: str
    version: int


class ImportReport(BaseModel):
    imported: int
    profiles: list[ImportedProfile]
    recomputed_incidents: int = Field(
        description="Open incidents whose priority was recomputed, or (when more than 500) "
        "queued for the worker to recompute"
    )


class ImportProblem(BaseModel):
    """One problem in a CSV import: where it is and why."""

    line: int | None
    column: str | None
    reason: str
