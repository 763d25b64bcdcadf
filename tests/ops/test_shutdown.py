"""SIGTERM to `rrg serve` under load: requests in flight finish and are answered, nothing
is half-done, and the process exits cleanly (its dispatcher and scheduler stopped)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
from sqlalchemy import func, select

from app.db import Database
from app.incidents.models import Incident
from tests.conftest import MakeActor
from tests.incidents.helpers import report
from tests.ops.helpers import Server, rrg_env


async def test_sigterm_lets_requests_in_flight_finish(
    db: Database, database_url: str, make_actor: MakeActor, tmp_path: Path
):
    lead = await make_actor("lead", "DOE")
    server = Server(
        rrg_env(database_url, RRG_SCHEDULER="on", RRG_LOG_FORMAT="json"), tmp_path / "serve.log"
    )
    await server.ready()
    answered: list[int] = []
    unanswered = 0
    terminated = asyncio.Event()
    first_answers = asyncio.Event()
    after_term: list[int] = []

    async def create(client: httpx.AsyncClient, n: int) -> None:
        nonlocal unanswered
        try:
            response = await client.post(
                "/api/v1/incidents", json=report(title=f"Cobalt {n}"), headers=lead.headers
            )
        except httpx.TransportError:
            unanswered += 1  # never reached a handler (refused, or a closed keep-alive)
            return
        answered.append(response.status_code)
        if len(answered) >= 5:
            first_answers.set()
        if terminated.is_set():
            after_term.append(response.status_code)

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.base, timeout=30, limits=limits) as client:
        tasks = [asyncio.create_task(create(client, n)) for n in range(60)]
        # The signal goes once the server is answering, with most requests still in flight
        # (a fixed pause let a fast server answer all 60 first).
        await asyncio.wait_for(first_answers.wait(), 30)
        server.signal(signal.SIGTERM)
        terminated.set()
        await asyncio.gather(*tasks)
    code = await server.wait(30)
    output = server.output()
    # uvicorn ends by re-raising the signal it caught, once shutdown is complete.
    assert code in (0, -signal.SIGTERM), output
    assert set(answered) <= {201}, answered
    assert after_term, "no request was still in flight at SIGTERM"
    assert len(answered) + unanswered == 60
    async with db.unit_of_work(readonly=True) as session:
        stored = await session.scalar(select(func.count()).select_from(Incident))
    assert stored == len(answered)  # every answered create committed; nothing else did
    assert "Application shutdown complete." in output
    assert "Scheduler has been shut down" in output
    assert "Traceback" not in output
