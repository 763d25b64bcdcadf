"""The exposure formula and the ranking: pure functions over current profiles.

Exposure of a mineral for one co-lead country, 0-100:

    100 x reliance x concern share x criticality x cover factor

- reliance: net import reliance, % / 100 (what is not produced at home);
- concern share: the share of imports from that country's ministry's countries of
  concern, % / 100 (of what is imported, how much adversarial suppliers control);
- criticality: the criticality (0-1, the priority weights' sector table) of the most
  critical dependent sector;
- cover factor: ``90 / (90 + days of cover)``: 1 with no stockpile, 0.5 at 90 days.

Each factor is necessary for harm (no imports, no adversarial suppliers, no critical use:
no exposure), so they multiply. The cover factor stands in for "÷ stockpile cover": it
orders minerals exactly as 1 / days does when the other factors are equal, but it is
defined at zero days and stays within 0-1, so one empty stockpile cannot dwarf the rest.

Joint exposure is the higher of the two countries' (the group's aim is that *neither*
country is left dependent); ties go to the higher sum, then the mineral code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from app.countries import PROFILE_COUNTRIES
from app.register.formulas import concern_share_pct, sector_criticality
from app.register.models import DependencyProfile

COVER_HALF_DAYS = 90.0
RankBy = Literal["joint", "US", "JP"]


def cover_factor(days: float) -> float:
    return COVER_HALF_DAYS / (COVER_HALF_DAYS + days)


@dataclass(frozen=True)
class Exposure:
    mineral: str
    country: str
    exposure: float
    reliance_pct: float
    concern_share_pct: float
    concern_suppliers: tuple[str, ...]
    sectors: tuple[str, ...]
    criticality: float
    days_of_cover: float
    cover_factor: float
    profile_version: int
    as_of: date
    illustrative: bool


def exposure(
    profile: DependencyProfile, concern: Collection[str], criticality: Mapping[str, float]
) -> Exposure:
    share = concern_share_pct(profile.suppliers, concern)
    critical = sector_criticality(profile.sectors, criticality)
    cover = cover_factor(profile.days_of_cover)
    value = 100.0 * (profile.net_import_reliance_pct / 100.0) * (share / 100.0) * critical * cover
    return Exposure(
        mineral=profile.mineral_code,
        country=profile.country,
        exposure=round(value, 6),
        reliance_pct=profile.net_import_reliance_pct,
        concern_share_pct=round(share, 6),
        concern_suppliers=tuple(s["country"] for s in profile.suppliers if s["country"] in concern),
        sectors=tuple(profile.sectors),
        criticality=critical,
        days_of_cover=profile.days_of_cover,
        cover_factor=round(cover, 6),
        profile_version=profile.version,
        as_of=profile.as_of,
        illustrative=profile.illustrative,
    )


@dataclass(frozen=True)
class Ranked:
    rank: int
    mineral: str
    value: float  # what the list is ranked by
    joint: float
    driver: str  # the country whose exposure is the joint one
    countries: dict[str, Exposure]
    country_ranks: dict[str, int]


def rank(
    profiles: Mapping[tuple[str, str], DependencyProfile],
    concern: Mapping[str, Collection[str]],
    criticality: Mapping[str, float],
    by: RankBy = "joint",
) -> list[Ranked]:
    """Minerals with at least one current profile, most exposed first (``by`` a country:
    only the minerals with that country's profile, ranked by its exposure)."""
    per_mineral: dict[str, dict[str, Exposure]] = defaultdict(dict)
    for (mineral, country), profile in profiles.items():
        per_mineral[mineral][country] = exposure(
            profile, concern.get(country, frozenset()), criticality
        )
    country_ranks: dict[str, dict[str, int]] = defaultdict(dict)
    for country in PROFILE_COUNTRIES:
        having = [m for m in per_mineral if country in per_mineral[m]]
        having.sort(key=lambda m: (-per_mineral[m][country].exposure, m))
        for position, mineral in enumerate(having, start=1):
            country_ranks[mineral][country] = position

    def joint(mineral: str) -> tuple[float, float, str]:
        values = per_mineral[mineral]
        driver = max(sorted(values), key=lambda c: values[c].exposure)
        return values[driver].exposure, sum(e.exposure for e in values.values()), driver

    if by == "joint":
        order = sorted(per_mineral, key=lambda m: (-joint(m)[0], -joint(m)[1], m))
    else:
        order = [m for m in per_mineral if by in per_mineral[m]]
        order.sort(key=lambda m: (-per_mineral[m][by].exposure, m))
    ranked = []
    for position, mineral in enumerate(order, start=1):
        top, _, driver = joint(mineral)
        ranked.append(
            Ranked(
                rank=position,
                mineral=mineral,
                value=top if by == "joint" else per_mineral[mineral][by].exposure,
                joint=top,
                driver=driver,
                countries={
                    c: per_mineral[mineral][c]
                    for c in PROFILE_COUNTRIES
                    if c in per_mineral[mineral]
                },
                country_ranks=country_ranks[mineral],
            )
        )
    return ranked
