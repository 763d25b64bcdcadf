"""Run the benchmarks and print one table: ``make bench`` (PostgreSQL at RRG_BENCH_POSTGRES_URL).

``QUICK=1 make bench`` (or RRG_BENCH_QUICK=1) runs shorter loads and fewer requests.
``python -m bench NAME ...`` runs only the named benchmarks.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback

if os.environ.get("QUICK") == "1":  # before the benchmark modules read RRG_BENCH_QUICK
    os.environ.setdefault("RRG_BENCH_QUICK", "1")

from sqlalchemy import text

from app.db import Database
from bench import (
    actions_queue,
    create_load,
    driver_choice,
    escalation_sweep,
    incidents_list,
    priority_list,
    request_cost,
    web_board,
    webhooks_fanout,
)
from bench.common import BENCH_POSTGRES_URL, Figure, machine_speed_ms, print_table

BENCHMARKS = {
    "request_cost": request_cost.run,
    "create_load": create_load.run,
    "driver": driver_choice.run,
    "incidents_list": incidents_list.run,
    "escalation_sweep": escalation_sweep.run,
    "actions_queue": actions_queue.run,
    "webhooks_fanout": webhooks_fanout.run,
    "priority_list": priority_list.run,
    "web_board": web_board.run,
}


async def ensure_database() -> None:
    server = Database(BENCH_POSTGRES_URL.rsplit("/", 1)[0] + "/postgres")
    name = BENCH_POSTGRES_URL.rsplit("/", 1)[1]
    async with server.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        exists = await conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        )
        if not exists:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await server.dispose()


def quick_sizes() -> str:
    """What QUICK=1 measures instead of the targets' sizes (the verdicts are indicative)."""
    sweep = escalation_sweep.QUICK_SHAPE
    return (
        "QUICK=1 sizes (targets are set for the full sizes): "
        f"P1 loads of {create_load.SECONDS} s; P5 after {create_load.P5_REQUESTS:,} requests; "
        f"P2 list over {incidents_list.INCIDENTS:,} incidents; P3 sweep of "
        f"{sweep.overdue:,} overdue among {sweep.open_actions:,} and "
        f"{escalation_sweep.LARGE_OPEN:,} open actions, {escalation_sweep.RUNS} run; P4 "
        f"{webhooks_fanout.EVENTS * webhooks_fanout.SUBSCRIPTIONS:,} deliveries; action queue "
        f"{actions_queue.SHAPE.open_actions:,} open; priority list "
        f"{' and '.join(f'{n:,}' for n in priority_list.SIZES)} incidents; web board "
        f"{web_board.INCIDENTS:,} incidents; request_cost {request_cost.N} requests each"
    )


def main() -> int:
    """Exit 0 when every chosen benchmark ran to the end, whatever its targets' verdicts
    (they are in the table); 1 when one could not run (named after the table)."""
    chosen = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    asyncio.run(ensure_database())
    speed_before = machine_speed_ms()
    figures: list[Figure] = []
    errors: list[str] = []
    started = time.monotonic()
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr)
        began = time.monotonic()
        try:
            figures.extend(BENCHMARKS[name]())
        except Exception as exc:  # reported after the table; the other benchmarks still run
            traceback.print_exc()
            errors.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
        print(f"{name} took {time.monotonic() - began:.0f} s", file=sys.stderr)
    print_table(figures, errors)
    quick = ""
    if os.environ.get("RRG_BENCH_QUICK") == "1":
        quick = " (QUICK=1)"
        print(quick_sizes())
    print(f"{len(chosen)} benchmarks{quick} in {time.monotonic() - started:.0f} s")
    print(
        f"machine speed: a fixed Python loop took {speed_before:.1f} ms before the benchmarks "
        f"and {machine_speed_ms():.1f} ms after (compare runs by this before comparing times)"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
