"""Figures derived from a dependency profile, shared by the priority score and the
vulnerability ranking (so both read a profile the same way)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any


def concern_share_pct(suppliers: Iterable[Mapping[str, Any]], concern: Collection[str]) -> float:
    """The share of imports (%) that comes from countries of concern: the sum of the listed
    suppliers' shares whose country is on the ministry's list. Imports not attributed to a
    listed supplier count as not of concern."""
    total = sum(float(s["share_pct"]) for s in suppliers if s["country"] in concern)
    return min(100.0, total)


def concern_dependence_pct(reliance_pct: float, share_pct: float) -> float:
    """The share of consumption (%) sourced from countries of concern: the imported share
    of consumption times the concern countries' share of imports."""
    return reliance_pct * share_pct / 100.0


def sector_criticality(sectors: Iterable[str], criticality: Mapping[str, float]) -> float:
    """The criticality (0-1) of the most critical sector; 0 when there is none."""
    return max((float(criticality.get(s, 0.0)) for s in sectors), default=0.0)
