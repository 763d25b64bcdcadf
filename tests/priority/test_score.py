"""The priority score as a pure function: bounded, its breakdown adds up to it, and it
never falls when an input becomes more urgent (property tests)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from app.incidents.vocabulary import SECTORS, SEVERITIES
from app.priority.score import (
    COMPONENTS,
    DEFAULT_SECTOR_CRITICALITY,
    Concern,
    Cover,
    PriorityInputs,
    Weights,
    inputs_for,
    priority,
)

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
percent = st.floats(min_value=0, max_value=100, allow_nan=False)
days = st.floats(min_value=0, max_value=400, allow_nan=False)
weights = st.builds(
    lambda c, s: Weights(dict(zip(COMPONENTS, c, strict=True)), dict(zip(SECTORS, s, strict=True))),
    st.lists(
        st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=6, max_size=6
    ).filter(lambda ws: sum(ws) > 0),
    st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=8, max_size=8),
)
inputs = st.builds(
    PriorityInputs,
    severity=st.none() | st.sampled_from(SEVERITIES),
    supply_share_pct=st.none() | percent,
    cover=st.none()
    | st.builds(Cover, days=days, country=st.just("US"), source=st.just("incident")),
    concern=st.none()
    | st.builds(
        Concern,
        dependence_pct=percent,
        country=st.just("JP"),
        mineral=st.just("Ga"),
        reliance_pct=st.just(100.0),
        concern_share_pct=percent,
    ),
    sectors=st.lists(st.sampled_from(SECTORS), unique=True).map(tuple),
    effective_at=st.none()
    | st.integers(min_value=-200 * 24, max_value=200 * 24).map(lambda h: NOW + timedelta(hours=h)),
)


def score(i: PriorityInputs, w: Weights) -> float:
    return priority(i, w, NOW).score


@settings(max_examples=300)
@given(inputs, weights)
def test_the_breakdown_adds_up_to_a_score_between_0_and_100(i: PriorityInputs, w: Weights):
    result = priority(i, w, NOW)
    assert 0 <= result.score <= 100
    assert [c.name for c in result.components] == list(COMPONENTS)
    assert math.isclose(sum(c.contribution for c in result.components), result.score, abs_tol=1e-9)
    for c in result.components:
        assert 0 <= c.normalised <= 1
        assert c.weight == w.components[c.name]


@settings(max_examples=200)
@given(inputs, weights, st.sampled_from(SEVERITIES))
def test_a_graver_severity_never_lowers_the_score(i, w, other):
    graver = min(filter(None, [i.severity, other]), key=SEVERITIES.index)
    assert score(replace(i, severity=graver), w) >= score(i, w)


@settings(max_examples=200)
@given(inputs, weights, percent)
def test_a_larger_share_affected_never_lowers_the_score(i, w, extra):
    base = i.supply_share_pct or 0
    assert score(replace(i, supply_share_pct=min(100, base + extra)), w) >= score(i, w)


@settings(max_examples=200)
@given(inputs, weights, days)
def test_less_cover_never_lowers_the_score(i, w, fewer):
    if i.cover is None:
        return
    less = replace(i.cover, days=max(0.0, i.cover.days - fewer))
    assert score(replace(i, cover=less), w) >= score(i, w)


@settings(max_examples=200)
@given(inputs, weights, percent)
def test_more_dependence_on_countries_of_concern_never_lowers_the_score(i, w, extra):
    if i.concern is None:
        return
    more = replace(i.concern, dependence_pct=min(100.0, i.concern.dependence_pct + extra))
    assert score(replace(i, concern=more), w) >= score(i, w)


@settings(max_examples=200)
@given(inputs, weights, st.sampled_from(SECTORS))
def test_another_affected_sector_never_lowers_the_score(i, w, sector):
    assert score(replace(i, sectors=(*i.sectors, sector)), w) >= score(i, w)


@settings(max_examples=200)
@given(inputs, weights, st.integers(min_value=0, max_value=400 * 24))
def test_an_earlier_effective_time_never_lowers_the_score(i, w, hours):
    if i.effective_at is None:
        return
    sooner = i.effective_at - timedelta(hours=hours)
    assert score(replace(i, effective_at=sooner), w) >= score(i, w)


def test_defense_and_energy_weigh_most_by_default():
    top = max(DEFAULT_SECTOR_CRITICALITY.values())
    assert {s for s, v in DEFAULT_SECTOR_CRITICALITY.items() if v == top} == {"defense", "energy"}


def test_the_default_weights_give_worked_figures():
    result = priority(
        PriorityInputs(
            severity="SEV2",
            supply_share_pct=50,
            cover=Cover(90, "US", "incident"),
            concern=Concern(40, "JP", "Ga", 80, 50),
            sectors=("automotive", "defense"),
            effective_at=NOW + timedelta(days=45),
        ),
        Weights(),
        NOW,
    )
    by_name = {c.name: (c.normalised, c.contribution) for c in result.components}
    assert by_name == {
        "severity": (0.666667, 20.0),
        "supply_share": (0.5, 10.0),
        "days_of_cover": (0.5, 7.5),
        "concern_dependence": (0.4, 6.0),
        "sector_criticality": (1.0, 10.0),
        "time_to_effect": (0.5, 5.0),
    }
    assert result.score == 58.5


def _profile(days_of_cover, reliance=100.0, suppliers=(), sectors=()):
    return SimpleNamespace(
        days_of_cover=days_of_cover,
        net_import_reliance_pct=reliance,
        suppliers=[{"country": c, "share_pct": s} for c, s in suppliers],
        sectors=list(sectors),
    )


def test_inputs_prefer_the_incidents_figures_and_take_the_lower_country():
    profiles = {
        ("Ga", "US"): _profile(40, 100, [("CN", 60)], ["defense"]),
        ("Ge", "US"): _profile(10, 50, [("CN", 90)]),
        ("Ga", "JP"): _profile(75, 60, [("CN", 70), ("RU", 20)], ["electronics"]),
    }
    concern = {"US": frozenset({"CN"}), "JP": frozenset({"RU"})}
    mixed = inputs_for(
        severity="SEV1",
        supply_share_pct=None,
        days_of_cover={"JP": 5},
        sectors=[],
        effective_at=None,
        minerals=["Ga", "Ge"],
        profiles=profiles,
        concern=concern,
    )
    assert mixed.cover == Cover(5, "JP", "incident")  # JP's own 5 < US profiles' 10
    assert mixed.concern is not None
    assert (mixed.concern.mineral, mixed.concern.country, mixed.concern.dependence_pct) == (
        "Ga",
        "US",
        60,
    )  # Ga US 100 x 60 % beats Ge US 50 x 90 % and Ga JP 60 x 20 %
    assert (mixed.sectors, mixed.sectors_source) == (("defense", "electronics"), "profile")
    own = inputs_for(
        severity=None,
        supply_share_pct=10,
        days_of_cover={"US": 200, "JP": 300},
        sectors=["medical"],
        effective_at=None,
        minerals=["Ga"],
        profiles=profiles,
        concern=concern,
    )
    assert own.cover == Cover(200, "US", "incident")
    assert (own.sectors, own.sectors_source) == (("medical",), "incident")
    unknown = inputs_for(
        severity=None,
        supply_share_pct=None,
        days_of_cover={},
        sectors=[],
        effective_at=None,
        minerals=["Li"],
        profiles=profiles,
        concern=concern,
    )
    assert (unknown.cover, unknown.concern, unknown.sectors) == (None, None, ())
    assert priority(unknown, Weights(), NOW).score == 0
