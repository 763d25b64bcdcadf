"""The one home of the service's background work, run by the app's lifespan (unless
``RRG_SCHEDULER=off``) and by ``rrg worker``:

- periodic jobs on APScheduler (in-memory job store: all durable state is in the database):
  the escalation sweep, the purge of expired idempotency keys, webhook history retention,
  the queued priority recomputes and the time-based priority rescoring;
- the webhook dispatcher, a long-running loop woken by commits (app.webhooks.dispatcher).

Every job is safe to run in several processes at once: correctness comes from the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from app import clock, metrics
from app.config import Settings
from app.db import Database
from app.escalation.sweep import sweep
from app.idempotency import purge_expired
from app.priority.service import rescore_by_time, run_recompute_jobs
from app.webhooks.dispatcher import Dispatcher
from app.webhooks.service import purge_history

logger = logging.getLogger("rrg.worker")

IDEMPOTENCY_PURGE_EVERY = 600.0
RETENTION_EVERY = 3600.0
RETENTION_BATCH = 5000
# Queued recomputes (a weights change, a big import) start within seconds of the request.
PRIORITY_JOBS_EVERY = 5.0
# The time-to-effect component moves by 1/90 a day: hourly keeps a score within a few
# hundredths of a point.
PRIORITY_RESCORE_EVERY = 3600.0


@dataclass(frozen=True)
class Job:
    id: str
    every_seconds: float
    run: Callable[[], Awaitable[None]]


async def run_sweep(db: Database) -> None:
    started = time.perf_counter()
    try:
        report = await sweep(db)
    except Exception:
        # A failed sweep changed nothing (its transaction rolled back); the next one retries.
        metrics.SWEEPS_FAILED.inc()
        logger.exception("escalation sweep failed")
        return
    finally:
        metrics.SWEEP_DURATION.observe(time.perf_counter() - started)
    for record in report.escalations:
        metrics.ESCALATIONS.labels(record.item_type, str(record.level)).inc()
    if report.escalations:
        logger.info(
            "escalation sweep escalated %d item-levels",
            len(report.escalations),
            extra={"escalations": len(report.escalations)},
        )


async def purge_idempotency_keys(db: Database) -> None:
    """Idempotency keys are kept 24 hours."""
    try:
        async with db.unit_of_work() as session:
            await purge_expired(session)
    except Exception:
        logger.exception("purging expired idempotency keys failed")


async def purge_webhook_history(db: Database, keep: timedelta) -> None:
    """Finished deliveries (with their attempts) and their events are kept ``keep``."""
    cutoff = clock.now() - keep
    try:
        while True:
            async with db.unit_of_work() as session:
                deleted = await purge_history(session, cutoff, RETENTION_BATCH)
            if deleted < RETENTION_BATCH:
                return
    except Exception:
        logger.exception("purging old webhook deliveries failed")


async def run_priority_jobs(db: Database) -> None:
    try:
        await run_recompute_jobs(db)
    except Exception:
        # Each batch commits on its own: the next run resumes where this one stopped.
        logger.exception("queued priority recompute failed")


async def rescore_priorities(db: Database) -> None:
    try:
        await rescore_by_time(db)
    except Exception:
        logger.exception("time-based priority rescoring failed")


def periodic_jobs(settings: Settings, db: Database) -> list[Job]:
    return [
        Job("escalation-sweep", settings.sweep_interval_seconds, partial(run_sweep, db)),
        Job("idempotency-purge", IDEMPOTENCY_PURGE_EVERY, partial(purge_idempotency_keys, db)),
        Job(
            "webhook-retention",
            RETENTION_EVERY,
            partial(purge_webhook_history, db, timedelta(days=settings.webhook_retention_days)),
        ),
        Job("priority-recompute", PRIORITY_JOBS_EVERY, partial(run_priority_jobs, db)),
        Job("priority-rescore", PRIORITY_RESCORE_EVERY, partial(rescore_priorities, db)),
    ]


def _tracked(
    run: Callable[[], Awaitable[None]], running: set[asyncio.Task[object]]
) -> Callable[[], Awaitable[None]]:
    """``run`` as a job whose task sits in ``running`` while it runs, so shutdown can await it
    (APScheduler's asyncio executor would cancel it mid-transaction)."""

    async def job() -> None:
        task = asyncio.current_task()
        if task is not None:
            running.add(task)
        try:
            await run()
        finally:
            if task is not None:
                running.discard(task)

    return job


def build_scheduler(
    settings: Settings, db: Database, running: set[asyncio.Task[object]]
) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in periodic_jobs(settings, db):
        scheduler.add_job(
            _tracked(job.run, running),
            "interval",
            seconds=job.every_seconds,
            id=job.id,
            max_instances=1,  # a run still going is never started twice in this process
            coalesce=True,
            misfire_grace_time=None,
        )
    return scheduler


class Worker:
    """The periodic jobs and the dispatcher of one process."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.running_jobs: set[asyncio.Task[object]] = set()
        self.scheduler = build_scheduler(settings, db, self.running_jobs)
        self.dispatcher = Dispatcher.from_settings(settings, db)
        self.grace_seconds = settings.shutdown_grace_seconds

    async def start(self) -> None:
        self.scheduler.start()
        await self.dispatcher.start()

    async def stop(self) -> None:
        """Start no new job, let the dispatcher and the jobs still running finish (within the
        shutdown grace), then stop the scheduler."""
        self.scheduler.pause()
        try:
            await self.dispatcher.stop()
            await self.dispatcher.aclose()
        finally:
            if self.running_jobs:
                await asyncio.wait(set(self.running_jobs), timeout=self.grace_seconds)
            self.scheduler.shutdown(wait=False)
