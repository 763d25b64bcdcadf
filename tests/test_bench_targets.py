"""The bench table's verdicts: each row checked against bench/targets.py (no database)."""

from __future__ import annotations

import math

import pytest

from bench.common import Figure, print_table, verdict


@pytest.mark.parametrize(
    ("figure", "expected"),
    [
        (Figure("create_load", "P1 SQLite saturation ratio rrg/floor", 0.61, "x"), "PASS"),
        (Figure("create_load", "P1 PostgreSQL saturation ratio rrg/floor", 0.08, "x"), "FAIL"),
        (Figure("create_load", "P1 SQLite 300 req/s p99", 50.0, "ms", 3.0, "floor"), "PASS"),
        (Figure("create_load", "P1 SQLite 300 req/s p99", math.nan, "ms", 3.0, "floor"), "FAIL"),
        (
            Figure("create_load", "P1 SQLite 300 req/s not answered 201 (of 1500)", 1, "req"),
            "FAIL",
        ),
        (
            Figure("create_load", "P5 PostgreSQL server RSS after 10,000 requests", 149, "MB"),
            "PASS",
        ),
        (Figure("webhooks_fanout", "deliveries/s", 330, "/s", 462, "direct"), "FAIL"),
        # P3 at the larger size: under 500 ms, but 30% slower than at 200k -> not flat.
        (
            Figure(
                "escalation_sweep",
                "sweep, 1,000k open / same 2,000 overdue (+30%)",
                390,
                "ms",
                300,
                "200k open",
            ),
            "FAIL",
        ),
        (
            Figure(
                "escalation_sweep",
                "sweep, 1,000k open / same 2,000 overdue (+3%)",
                309,
                "ms",
                300,
                "200k open",
            ),
            "PASS",
        ),
    ],
)
def test_rows_are_checked_against_their_targets(figure: Figure, expected: str) -> None:
    ids, shown, result = verdict(figure)
    assert result == expected
    assert ids.startswith("P") and shown


def test_a_ratio_target_without_a_baseline_fails_and_unknown_rows_are_unchecked() -> None:
    no_baseline = Figure("escalation_sweep", "sweep CPU, 400k open (+2%)", 100, "ms")
    assert verdict(no_baseline)[2] == "FAIL"
    assert verdict(Figure("driver", "asyncpg units of work/s", 900, "/s")) == ("", "", "")
    free_text = Figure("web_board", "GET / p99", 10, "ms", target="≤ 100 ms")
    assert verdict(free_text) == ("", "≤ 100 ms", "unchecked")


def test_the_table_prints_ratio_target_result_and_tally(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(
        [
            Figure("create_load", "P1 SQLite saturation, c=32", 40, "req/s", 400, "floor app"),
            Figure("create_load", "P1 SQLite saturation ratio rrg/floor", 0.1, "x"),
            Figure("incidents_list", "?status=responding p99", 12, "ms", 6, "GET /me"),
        ],
        ["web_board: RuntimeError: the server did not start"],
    )
    out = capsys.readouterr().out
    ratio_row = next(line for line in out.splitlines() if "ratio rrg/floor" in line)
    assert "≥ 0.6 x" in ratio_row and ratio_row.rstrip().endswith("FAIL")
    list_row = next(line for line in out.splitlines() if "responding p99" in line)
    assert "2.00x" in list_row and "≤ 30 ms" in list_row and list_row.rstrip().endswith("PASS")
    assert "targets: 1 PASS, 1 FAIL (of 2 checked rows)" in out
    assert "ERROR web_board: RuntimeError" in out
