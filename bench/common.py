"""Shared helpers for the benchmarks: timing and the results table."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from bench.targets import targets_of

BENCH_POSTGRES_URL = os.environ.get(
    "RRG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/rrg_bench"
)
REPO = Path(__file__).resolve().parent.parent


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
    # Free text, for a figure no entry of bench/targets.py covers (shown, not checked).
    target: str = ""


def machine_speed_ms() -> float:
    """How long a fixed pure-Python loop takes here (ms, best of 5): absolute figures from
    runs whose machine speed differs are not comparable; this says by how much it does."""
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(2_000):
            sum(range(1_000))
        timings.append((time.perf_counter() - start) * 1000)
    return min(timings)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def verdict(figure: Figure) -> tuple[str, str, str]:
    """(ids, targets, PASS/FAIL) of a figure, from bench/targets.py."""
    checks = targets_of(figure.benchmark, figure.metric)
    if not checks:
        return "", figure.target, "unchecked" if figure.target else ""
    ids = "/".join(dict.fromkeys(t.id for t in checks))
    shown = "; ".join(t.describe(figure.unit) for t in checks)
    met = all(t.met(figure.value, figure.baseline) for t in checks)
    return ids, shown, "PASS" if met else "FAIL"


def print_table(figures: list[Figure], errors: Sequence[str] = ()) -> None:
    """One row per figure: its value, the baseline from the same run, their ratio, the
    target(s) and whether they are met; then the tally and any benchmark that failed to run."""
    header = ("id", "benchmark", "metric", "value", "baseline (same run)", "ratio", "target",
              "result")  # fmt: skip
    rows = []
    tally = {"PASS": 0, "FAIL": 0}
    for f in figures:
        ids, target, result = verdict(f)
        if result in tally:
            tally[result] += 1
        ratio = f.value / f.baseline if f.baseline else None
        rows.append(
            (
                ids or "-",
                f.benchmark,
                f.metric,
                f"{f.value:,.2f} {f.unit}".rstrip(),
                f"{f.baseline:,.2f} {f.unit} ({f.baseline_name})"
                if f.baseline is not None
                else "-",
                f"{ratio:,.2f}x" if ratio is not None else "-",
                target or "-",
                result or "-",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(
        f"\ntargets: {tally['PASS']} PASS, {tally['FAIL']} FAIL "
        f"(of {tally['PASS'] + tally['FAIL']} checked rows); "
        f"1-min load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for error in errors:
        print(f"ERROR {error}")


# --- servers in their own processes ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the server has finished the work a previous load left queued (its CPU
        use stays under 5% for a second), so the next measurement starts from idle."""
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.cpu_seconds()
            if now - before < 0.05:
                return
            before = now

    def rss_mb(self) -> float:
        """Resident set size of the server process now (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")


@contextlib.contextmanager
def serve(
    command: Sequence[str], env: dict[str, str], *, ready_path: str = "/readyz"
) -> Iterator[Server]:
    """Run ``command`` (given ``--host``/``--port`` options) until ``ready_path`` answers 200;
    stop it afterwards."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the server did not start:\n{log.read().decode()}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            yield Server(base, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rrg_server(url: str, **env: str) -> contextlib.AbstractContextManager[Server]:
    """The app served by ``rrg serve`` (one uvicorn worker, scheduler off, no access log)."""
    import sys

    return serve(
        [sys.executable, "-m", "app", "serve"],
        {"RRG_DATABASE_URL": url, "RRG_SCHEDULER": "off", "RRG_LOG_LEVEL": "WARNING", **env},
    )


async def fresh_database(url: str) -> None:
    """Create the database if needed, then drop and recreate its public schema."""
    import asyncpg

    server, name = url.rsplit("/", 1)
    admin = await asyncpg.connect(server + "/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    finally:
        await conn.close()


async def continue_incident_numbers(conn: Any, top: int) -> None:
    """After incidents numbered 1..``top`` were seeded directly (an asyncpg connection to
    PostgreSQL): the next create takes ``top + 1`` from the ``incident_numbers`` sequence."""
    await conn.execute("SELECT setval('incident_numbers', $1::bigint + 1, false)", top)
