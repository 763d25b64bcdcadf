"""Runs the sweep every RRG_SWEEP_INTERVAL_SECONDS (APScheduler, in-memory job store:
all durable state lives in the database)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from app.config import Settings
from app.db import Database
from app.escalation.sweep import sweep
from app.idempotency import purge_expired

logger = logging.getLogger("rrg.scheduler")


async def run_sweep(db: Database) -> None:
    try:
        await sweep(db)
    except Exception:
        # A failed sweep changed nothing (its transaction rolled back); the next one retries.
        logger.exception("escalation sweep failed")
    try:
        # Idempotency keys are kept 24 hours; the periodic job is where they expire.
        async with db.unit_of_work() as session:
            await purge_expired(session)
    except Exception:
        logger.exception("purging expired idempotency keys failed")


def build_scheduler(settings: Settings, db: Database) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(
        run_sweep,
        "interval",
        seconds=settings.sweep_interval_seconds,
        args=[db],
        id="escalation-sweep",
        max_instances=1,  # a sweep still running is never started twice in this process
        coalesce=True,
        misfire_grace_time=None,
    )
    return scheduler
