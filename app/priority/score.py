"""The priority score: a pure, documented function of an incident's inputs and the weights.

Six components, each normalised to 0-1 (1 = most urgent):

- ``severity``: SEV1 1, SEV2 2/3, SEV3 1/3, SEV4 0.
- ``supply_share``: the share of supply affected, % / 100.
- ``days_of_cover``: the lower of the two countries' days of cover (the incident's own
  figure for a country, else the lowest current profile figure among its minerals),
  ``max(0, 1 - days / 180)``: no cover 1, 90 days 0.5, 180 days or more 0.
- ``concern_dependence``: the highest, over the incident's minerals and both countries, of
  the share of consumption sourced from that country's countries of concern
  (net import reliance x concern countries' share of imports), % / 100.
- ``sector_criticality``: the criticality (0-1, a weight) of the most critical affected
  sector (the incident's sectors, else its minerals' dependent sectors).
- ``time_to_effect``: 1 when ``effective_at`` has passed, falling linearly to 0 at 90 days
  ahead.

An input that is not known contributes 0 (the breakdown shows it as null, so triage can
fill it in). Each component contributes ``100 x weight / sum of weights x normalised``,
rounded down to 4 decimals; the score is the sum of the contributions, so the breakdown
adds up to it exactly and the score never leaves 0-100. The score only rises when any
input becomes more urgent (tested by property tests).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.countries import PROFILE_COUNTRIES
from app.incidents.vocabulary import SECTORS, SEVERITIES
from app.register.formulas import (
    concern_dependence_pct,
    concern_share_pct,
    sector_criticality,
)

COMPONENTS: tuple[str, ...] = (
    "severity",
    "supply_share",
    "days_of_cover",
    "concern_dependence",
    "sector_criticality",
    "time_to_effect",
)
DEFAULT_COMPONENT_WEIGHTS: dict[str, float] = {
    "severity": 30.0,
    "supply_share": 20.0,
    "days_of_cover": 15.0,
    "concern_dependence": 15.0,
    "sector_criticality": 10.0,
    "time_to_effect": 10.0,
}
# Defense and energy weigh most (the group's mandate); other sectors by how hard a shortage
# is to absorb.
DEFAULT_SECTOR_CRITICALITY: dict[str, float] = {
    "defense": 1.0,
    "energy": 1.0,
    "semiconductors": 0.8,
    "aerospace": 0.8,
    "medical": 0.7,
    "automotive": 0.6,
    "electronics": 0.5,
    "other": 0.3,
}
assert set(DEFAULT_COMPONENT_WEIGHTS) == set(COMPONENTS)
assert set(DEFAULT_SECTOR_CRITICALITY) == set(SECTORS)

COVER_HORIZON_DAYS = 180.0
EFFECT_HORIZON_DAYS = 90.0
_PLACES = 10_000  # contributions are kept to 4 decimals


@dataclass(frozen=True)
class Weights:
    components: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_COMPONENT_WEIGHTS))
    sectors: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SECTOR_CRITICALITY))
    version: int = 0


@dataclass(frozen=True)
class Cover:
    """The lowest days of cover, and where the figure came from."""

    days: float
    country: str
    source: str  # incident | profile
    mineral: str | None = None


@dataclass(frozen=True)
class Concern:
    """The highest dependence on countries of concern, and what it is made of."""

    dependence_pct: float
    country: str
    mineral: str
    reliance_pct: float
    concern_share_pct: float


@dataclass(frozen=True)
class PriorityInputs:
    severity: str | None = None
    supply_share_pct: float | None = None
    cover: Cover | None = None
    concern: Concern | None = None
    sectors: tuple[str, ...] = ()
    sectors_source: str = "incident"  # incident | profile
    effective_at: datetime | None = None


@dataclass(frozen=True)
class Component:
    name: str
    input: Any
    basis: dict[str, Any]
    normalised: float
    weight: float
    contribution: float


@dataclass(frozen=True)
class Priority:
    score: float
    components: tuple[Component, ...]
    weights_version: int
    computed_at: datetime

    def as_json(self) -> dict[str, Any]:
        # vars(), not dataclasses.asdict(): asdict deep-copies and dominated recompute time.
        return {
            "score": self.score,
            "weights_version": self.weights_version,
            "computed_at": self.computed_at.isoformat(),
            "components": [dict(vars(c)) for c in self.components],
        }


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def severity_factor(severity: str | None) -> float:
    if severity is None:
        return 0.0
    rank = SEVERITIES.index(severity)  # SEV1 = 0 ... SEV4 = 3
    return (len(SEVERITIES) - 1 - rank) / (len(SEVERITIES) - 1)


def cover_factor(days: float | None) -> float:
    return 0.0 if days is None else _clamp01(1.0 - days / COVER_HORIZON_DAYS)


def effect_factor(effective_at: datetime | None, now: datetime) -> float:
    if effective_at is None:
        return 0.0
    days_left = (effective_at - now).total_seconds() / 86_400
    return _clamp01(1.0 - days_left / EFFECT_HORIZON_DAYS)


def _floor4(value: float) -> float:
    # round() first absorbs binary noise (0.29 * 10_000 = 2899.9999999999995).
    return math.floor(round(value * _PLACES, 6)) / _PLACES


def priority(inputs: PriorityInputs, weights: Weights, now: datetime) -> Priority:
    """The score (0-100) and its breakdown; see the module docstring for the formula."""
    days_left = (
        round((inputs.effective_at - now).total_seconds() / 86_400, 2)
        if inputs.effective_at is not None
        else None
    )
    parts: dict[str, tuple[Any, dict[str, Any], float]] = {
        "severity": (inputs.severity, {}, severity_factor(inputs.severity)),
        "supply_share": (
            inputs.supply_share_pct,
            {"unit": "%"},
            _clamp01((inputs.supply_share_pct or 0.0) / 100.0),
        ),
        "days_of_cover": (
            inputs.cover.days if inputs.cover else None,
            dict(vars(inputs.cover)) if inputs.cover else {},
            cover_factor(inputs.cover.days if inputs.cover else None),
        ),
        "concern_dependence": (
            inputs.concern.dependence_pct if inputs.concern else None,
            dict(vars(inputs.concern)) if inputs.concern else {},
            _clamp01(inputs.concern.dependence_pct / 100.0) if inputs.concern else 0.0,
        ),
        "sector_criticality": (
            list(inputs.sectors),
            {"source": inputs.sectors_source} if inputs.sectors else {},
            _clamp01(sector_criticality(inputs.sectors, weights.sectors)),
        ),
        "time_to_effect": (
            inputs.effective_at.isoformat() if inputs.effective_at else None,
            {"days_left": days_left} if days_left is not None else {},
            effect_factor(inputs.effective_at, now),
        ),
    }
    total_weight = sum(float(weights.components[name]) for name in COMPONENTS)
    components = []
    for name in COMPONENTS:
        value, basis, normalised = parts[name]
        weight = float(weights.components[name])
        share = weight / total_weight if total_weight > 0 else 0.0
        components.append(
            Component(
                name=name,
                input=value,
                basis=basis,
                normalised=round(normalised, 6),
                weight=weight,
                contribution=_floor4(100.0 * share * normalised),
            )
        )
    score = round(math.fsum(c.contribution for c in components), 4)
    return Priority(score, tuple(components), weights.version, now)


class ProfileFigures(Protocol):
    """What the score reads from a current dependency profile."""

    @property
    def net_import_reliance_pct(self) -> float: ...
    @property
    def suppliers(self) -> list[Any]: ...
    @property
    def days_of_cover(self) -> float: ...
    @property
    def sectors(self) -> list[str]: ...


Profiles = Mapping[tuple[str, str], ProfileFigures]  # (mineral, country) -> current profile


def lowest_cover(
    incident_cover: Mapping[str, Any], minerals: Sequence[str], profiles: Profiles
) -> Cover | None:
    """Per co-lead country, the incident's own days of cover, else the lowest among its
    minerals' current profiles; then the lower of the two countries."""
    candidates: list[Cover] = []
    for country in PROFILE_COUNTRIES:
        if incident_cover.get(country) is not None:
            candidates.append(Cover(float(incident_cover[country]), country, "incident"))
            continue
        known = [
            Cover(float(profiles[(m, country)].days_of_cover), country, "profile", m)
            for m in minerals
            if (m, country) in profiles
        ]
        if known:
            candidates.append(min(known, key=lambda c: c.days))
    return min(candidates, key=lambda c: c.days, default=None)


def highest_concern(
    minerals: Sequence[str], profiles: Profiles, concern: Mapping[str, Collection[str]]
) -> Concern | None:
    """The highest dependence on countries of concern over the incident's minerals and
    both countries (each country judged by its own ministry's list)."""
    found: list[Concern] = []
    for mineral in minerals:
        for country in PROFILE_COUNTRIES:
            profile = profiles.get((mineral, country))
            if profile is None:
                continue
            share = concern_share_pct(profile.suppliers, concern.get(country, ()))
            reliance = float(profile.net_import_reliance_pct)
            found.append(
                Concern(
                    dependence_pct=round(concern_dependence_pct(reliance, share), 6),
                    country=country,
                    mineral=mineral,
                    reliance_pct=reliance,
                    concern_share_pct=round(share, 6),
                )
            )
    return max(found, key=lambda c: c.dependence_pct, default=None)


def affected_sectors(
    incident_sectors: Sequence[str], minerals: Sequence[str], profiles: Profiles
) -> tuple[tuple[str, ...], str]:
    """The incident's sectors, else the sectors its minerals' profiles name."""
    if incident_sectors:
        return tuple(dict.fromkeys(incident_sectors)), "incident"
    named = [
        sector
        for mineral in minerals
        for country in PROFILE_COUNTRIES
        if (mineral, country) in profiles
        for sector in profiles[(mineral, country)].sectors
    ]
    return tuple(sorted(set(named))), "profile"


def inputs_for(
    *,
    severity: str | None,
    supply_share_pct: float | None,
    days_of_cover: Mapping[str, Any],
    sectors: Sequence[str],
    effective_at: datetime | None,
    minerals: Sequence[str],
    profiles: Profiles,
    concern: Mapping[str, Collection[str]],
) -> PriorityInputs:
    """An incident's priority inputs, its own figures first and the profiles for the rest
    (``concern``: co-lead country -> that ministry's countries of concern)."""
    chosen, source = affected_sectors(sectors, minerals, profiles)
    return PriorityInputs(
        severity=severity,
        supply_share_pct=supply_share_pct,
        cover=lowest_cover(days_of_cover, minerals, profiles),
        concern=highest_concern(minerals, profiles, concern),
        sectors=chosen,
        sectors_source=source,
        effective_at=effective_at,
    )
