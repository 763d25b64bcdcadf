"""Shared helpers for the benchmarks: timing and the results table."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

from app.config import Settings

BENCH_POSTGRES_URL = os.environ.get(
    "RRG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/rrg_bench"
)


def audit_key() -> bytes:
    """The timeline key the service uses in this environment (sweeps append to timelines)."""
    return Settings().audit_key_bytes()


@dataclass
class Figure:
    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def print_table(figures: list[Figure]) -> None:
    header = ("benchmark", "metric", "value", "baseline (same run)", "target")
    rows = [
        (
            f.benchmark,
            f.metric,
            f"{f.value:,.2f} {f.unit}",
            f"{f.baseline:,.2f} {f.unit} ({f.baseline_name})" if f.baseline is not None else "-",
            f.target or "-",
        )
        for f in figures
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
