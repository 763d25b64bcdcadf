"""The worker (app/worker.py): the periodic jobs on APScheduler, the dispatcher beside them,
started by the app's lifespan (unless RRG_SCHEDULER=off)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from apscheduler.triggers.interval import IntervalTrigger

from app import main as app_main
from app import worker as worker_module
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.worker import Worker, build_scheduler, run_sweep
from tests.escalation.helpers import (
    DAY,
    T0,
    Clock,
    Team,
    action_state,
    approved_action,
    open_incident,
)


async def test_each_periodic_job_is_scheduled_once_and_never_overlaps(
    db: Database, settings: Settings
):
    scheduler = build_scheduler(
        settings.model_copy(update={"sweep_interval_seconds": 12.5}), db, set()
    )
    jobs = {job.id: job for job in scheduler.get_jobs()}
    intervals = {
        "escalation-sweep": timedelta(seconds=12.5),
        "idempotency-purge": timedelta(minutes=10),
        "webhook-retention": timedelta(hours=1),
        "priority-recompute": timedelta(seconds=5),
        "priority-rescore": timedelta(hours=1),
    }
    assert set(jobs) == set(intervals)
    for name, job in jobs.items():
        assert job.max_instances == 1 and job.coalesce is True
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval == intervals[name]
    assert not scheduler.running


async def test_stopping_lets_a_running_job_finish_instead_of_cancelling_it(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    started, outcome = asyncio.Event(), []

    async def slow_job() -> None:
        started.set()
        try:
            await asyncio.sleep(0.3)
            outcome.append("finished")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    monkeypatch.setattr(
        worker_module,
        "periodic_jobs",
        lambda settings, db: [worker_module.Job("slow", 0.05, slow_job)],
    )
    worker = Worker(settings, db)
    await worker.start()
    await asyncio.wait_for(started.wait(), timeout=5)
    await worker.stop()
    assert outcome == ["finished"]
    assert not worker.running_jobs


@pytest.fixture
def frozen(db: Database) -> Clock:
    return Clock()


async def test_run_sweep_escalates_and_survives_a_failing_sweep(
    client: httpx.AsyncClient,
    db: Database,
    frozen: Clock,
    make_actor,
    monkeypatch: pytest.MonkeyPatch,
):
    from tests.escalation.helpers import make_team

    team: Team = await make_team(make_actor)
    incident = await open_incident(client, team)
    action = await approved_action(client, team, incident, due_at=T0 + DAY)
    frozen.set(T0 + DAY)
    await run_sweep(db)  # reads the clock
    assert await action_state(db, action["id"]) == (1, 0)

    async def broken(db: Database) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(worker_module, "sweep", broken)
    await run_sweep(db)  # logged, not raised: the next run retries


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Worker]:
    """Workers the app builds in its lifespan."""
    built: list[Worker] = []

    def build(settings: Settings, db: Database) -> Worker:
        built.append(Worker(settings, db))
        return built[-1]

    monkeypatch.setattr(app_main, "Worker", build)
    return built


async def test_the_app_lifespan_starts_and_stops_the_worker(
    db: Database, settings: Settings, captured: list[Worker]
):
    on = settings.model_copy(update={"scheduler": "on", "sweep_interval_seconds": 3600})
    app = create_app(on, db=db)
    async with app.router.lifespan_context(app):
        (worker,) = captured
        assert worker.scheduler.running
        assert len(worker.scheduler.get_jobs()) == len(worker_module.periodic_jobs(on, db))
        runner = worker.dispatcher._runner
        assert runner is not None and not runner.done()
    # APScheduler 3.11's AsyncIOScheduler.shutdown() runs on the loop's next turn.
    await asyncio.sleep(0)
    assert not worker.scheduler.running
    assert runner.done() and worker.dispatcher._runner is None
    assert worker.dispatcher.client.is_closed

    off = create_app(settings, db=db)  # RRG_SCHEDULER=off (the test settings)
    async with off.router.lifespan_context(off):
        pass
    assert len(captured) == 1
