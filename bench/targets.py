"""Every benchmark target (SPEC §11 and the issues' targets), in one place, machine-checked.

A target is keyed by benchmark and metric: ``metric`` is a regular expression that must match
the whole metric name (some names carry the run's sizes, e.g. "after 10,000 requests"). It
bounds either the figure's value (in the figure's unit) or its ratio to the baseline measured
in the same run (value / baseline). A row may carry several targets; it passes when all do.
``bench.common.print_table`` prints each row's targets and PASS/FAIL.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Comparison = Literal["<=", ">=", "=="]
_COMPARE: dict[Comparison, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
}
_SHOWN = {"<=": "≤", ">=": "≥", "==": "="}


@dataclass(frozen=True)
class Target:
    id: str  # P1..P5, or what the row is checked against
    benchmark: str
    metric: str  # regular expression, whole metric name
    compare: Comparison
    bound: float
    on: Literal["value", "ratio"] = "value"

    def matches(self, benchmark: str, metric: str) -> bool:
        return benchmark == self.benchmark and re.fullmatch(self.metric, metric) is not None

    def describe(self, unit: str) -> str:
        bound = f"{self.bound:,g}"
        if self.on == "ratio":
            return f"ratio {_SHOWN[self.compare]} {bound}"
        return f"{_SHOWN[self.compare]} {bound} {unit}".rstrip()

    def met(self, value: float, baseline: float | None) -> bool:
        """False also when the figure is missing (NaN) or the ratio has no baseline."""
        if self.on == "ratio":
            if baseline is None or baseline == 0:
                return False
            value = value / baseline
        return not math.isnan(value) and _COMPARE[self.compare](value, self.bound)


TARGETS: tuple[Target, ...] = (
    # P1: create incident over HTTP, one uvicorn worker, load from a separate process.
    Target("P1", "create_load", r"P1 \S+ saturation ratio rrg/floor", ">=", 0.60),
    Target("P1", "create_load", r"P1 \S+ 300 req/s p99", "<=", 50),
    Target("P1", "create_load", r"P1 \S+ 300 req/s not answered 201 \(of \d+\)", "==", 0),
    # Authenticated GET /api/v1/me against a bare FastAPI JSON endpoint (issue 10).
    Target("me", "create_load", r"\S+ GET /api/v1/me ratio rrg/bare", ">=", 0.50),
    Target("me", "request_cost", r"\S+ GET /me throughput vs bare \(CPU ratio\)", ">=", 0.50),
    # P2: the list with 100k incidents, 300k actions, 1M timeline events.
    Target("P2", "incidents_list", r"\?status=responding p99", "<=", 30),
    Target("P2", "incidents_list", r"\?limit=50 p99", "<=", 30),
    # The action queue is held to the list's bound (a reference, not a SPEC target).
    Target("P2 ref.", "actions_queue", r"\?.* p99", "<=", 30),
    # The priority-sorted list is held to the same bound (a reference, not a SPEC target).
    Target("P2 ref.", "priority_list", r"\S+ \?sort=-priority p99", "<=", 30),
    # P3: sweep 2,000 newly overdue among 200k and among 1M open actions; flat in table size
    # (the larger table within +20% of the smaller one, same run).
    Target("P3", "escalation_sweep", r"sweep, \S+ open / 2,000 overdue \(.*\)", "<=", 500),
    Target("P3", "escalation_sweep", r"sweep, \S+ open / same 2,000 overdue \(.*\)", "<=", 500),
    Target(
        "P3", "escalation_sweep", r"sweep, \S+ open / same 2,000 overdue \(.*\)", "<=", 1.20,
        on="ratio",
    ),
    Target("P3", "escalation_sweep", r"sweep CPU, \S+ open \(.*\)", "<=", 1.20, on="ratio"),
    # P4: webhook fan-out to a local receiver, one worker.
    Target("P4", "webhooks_fanout", r"deliveries/s", ">=", 1000),
    Target("P4", "webhooks_fanout", r"commit-to-receipt p50", "<=", 200),
    # P5: server memory after 100k requests (fewer with QUICK=1; the metric says how many).
    Target("P5", "create_load", r"P5 \S+ server RSS after [\d,]+ requests", "<=", 150),
)  # fmt: skip


def targets_of(benchmark: str, metric: str) -> list[Target]:
    return [t for t in TARGETS if t.matches(benchmark, metric)]
