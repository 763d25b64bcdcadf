"""prometheus-client's multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set, /metrics
merges what every process of one server counted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

COUNT = """
from app import metrics
metrics.ESCALATIONS.labels("action", "1").inc({n})
metrics.REQUESTS_IN_FLIGHT.inc()
"""
EXPOSE = """
from app import metrics
print(metrics.process_exposition().decode())
"""


def run(code: str, directory: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_counters_of_several_processes_are_summed(tmp_path: Path):
    run(COUNT.format(n=2), tmp_path)
    run(COUNT.format(n=3), tmp_path)
    text = run(EXPOSE, tmp_path)
    assert 'rrg_escalations_total{item_type="action",level="1"} 5.0' in text
