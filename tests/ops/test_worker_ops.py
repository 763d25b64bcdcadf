"""`rrg worker --port`: the worker's own health checks and metrics (its sweeps and
deliveries happen there, not in the API replicas), and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from tests.ops.conftest import METRICS_TOKEN
from tests.ops.helpers import Process, free_port, rrg_env, wait_until_up


async def test_the_worker_serves_health_and_its_metrics(database_url: str, tmp_path: Path):
    port = free_port()
    worker = Process(
        ["worker", "--port", str(port)],
        rrg_env(
            database_url,
            RRG_SWEEP_INTERVAL_SECONDS="0.5",
            RRG_METRICS_TOKEN=METRICS_TOKEN,
            RRG_LOG_FORMAT="json",
        ),
        tmp_path / "worker.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(base + "/readyz", 30, worker)
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/api/v1/me")).status_code == 404  # no API here
            auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            for _ in range(50):
                text = (await client.get("/metrics", headers=auth)).text
                if "rrg_sweep_duration_seconds_count 0.0" not in text:
                    break
                await asyncio.sleep(0.2)
            assert "rrg_sweep_duration_seconds_count" in text
            assert "rrg_sweep_duration_seconds_count 0.0" not in text  # it has swept
            assert "rrg_outbox_pending_deliveries" in text
    finally:
        worker.signal(signal.SIGTERM)
        code = await worker.wait(30)
    assert code == 0, worker.output()
    assert "Traceback" not in worker.output()
