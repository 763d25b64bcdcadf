"""The dispatcher as separate `rrg worker` processes (SPEC §7, §11 R2/R3): killed with
SIGKILL in the middle of a fan-out and restarted, every delivery completes and only attempts
in flight at the kill are repeated (with the same webhook-id); three workers on one
PostgreSQL send each of 2,000 deliveries once; a worker is woken across processes by
LISTEN/NOTIFY within a second, and keeps listening after its connection is cut."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from app.db import Database
from app.webhooks.models import Attempt, Delivery
from tests.conftest import REPO_ROOT, MakeActor
from tests.webhooks.helpers import emit, escalated, incident, subscribe
from tests.webhooks.receiver import Receiver, Reply

pytestmark = pytest.mark.slow


class Worker:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    async def ready(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while "RRG worker:" not in self.log.read_text(errors="replace"):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{self.log.read_text()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)


@asynccontextmanager
async def workers(
    database_url: str, tmp_path: Path, count: int = 1, **env: str
) -> AsyncIterator[list[Worker]]:
    started = []
    for n in range(count):
        log = tmp_path / f"worker-{n}-{time.monotonic_ns()}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app",
                "worker",
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": str(REPO_ROOT),
                    "RRG_ENV": "test",
                    "RRG_DATABASE_URL": database_url,
                    "RRG_WEBHOOK_ALLOWLIST": "127.0.0.1",
                    "RRG_SWEEP_INTERVAL_SECONDS": "3600",
                    **env,
                },
                stdout=out,
                stderr=out,
            )
        started.append(Worker(process, log))
    try:
        for worker in started:
            await worker.ready()
        yield started
    finally:
        for worker in started:
            if worker.process.returncode is None:
                worker.kill()
                await worker.process.wait()


async def statuses(db: Database) -> Counter[str]:
    async with db.unit_of_work(readonly=True) as session:
        rows = await session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        )
        return Counter({status: n for status, n in rows})


async def until_delivered(db: Database, total: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (await statuses(db))["delivered"] < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"not all delivered: {await statuses(db)}")
        await asyncio.sleep(0.1)


async def test_a_worker_killed_mid_fan_out_completes_every_delivery_after_restart(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    database_url: str,
    tmp_path: Path,
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url("/durable"))
    receiver.trust("/durable", sub["secret"])
    receiver.script("/durable", Reply(delay=0.05))
    found = await incident(client, lead)
    total = 300
    await emit(db, *(escalated(found["id"], n) for n in range(total)))
    env = {"RRG_WEBHOOK_LEASE_SECONDS": "2", "RRG_WEBHOOK_CONCURRENCY": "16"}

    async with workers(database_url, tmp_path, **env) as (first,):
        await receiver.wait_for(60, "/durable", within=30)
        first.kill()
        await first.process.wait()
    seen_before = len(receiver.at("/durable"))
    assert seen_before < total, "the kill came too late to be mid fan-out"
    async with db.unit_of_work(readonly=True) as session:
        in_flight = {
            f"msg_{i.hex}"
            for i in (
                await session.scalars(
                    select(Delivery.id).where(
                        Delivery.status == "pending", Delivery.lease_token.is_not(None)
                    )
                )
            ).all()
        }
    assert in_flight, "nothing was in flight at the kill"

    async with workers(database_url, tmp_path, **env) as (second,):
        await until_delivered(db, total, within=60)
        assert await second.stop() == 0

    requests = receiver.at("/durable")
    sent = Counter(r.msg_id for r in requests)
    async with db.unit_of_work(readonly=True) as session:
        ids = {f"msg_{i.hex}" for i in (await session.scalars(select(Delivery.id))).all()}
    assert set(sent) == ids  # every delivery reached the receiver
    duplicated = {msg_id for msg_id, n in sent.items() if n > 1}
    assert duplicated <= in_flight  # ... and only those in flight at the kill twice
    assert all(r.verified_by == ["current"] for r in requests)
    print(
        f"killed after {seen_before} requests; {len(in_flight)} in flight, {len(duplicated)} resent"
    )


# Replicated dispatchers and LISTEN/NOTIFY need PostgreSQL.
@pytest.mark.postgresql_only
async def test_three_workers_send_each_of_2000_deliveries_once(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    database_url: str,
    tmp_path: Path,
):
    lead = await make_actor("lead", "DOE")
    subs = [await subscribe(client, lead, receiver.url(f"/replica{n}")) for n in range(2)]
    for n, sub in enumerate(subs):
        receiver.trust(f"/replica{n}", sub["secret"])
    found = await incident(client, lead)
    async with workers(database_url, tmp_path, count=3) as running:
        for batch in range(4):  # 4 commits x 250 events x 2 subscriptions
            await emit(db, *(escalated(found["id"], batch * 250 + n) for n in range(250)))
        await until_delivered(db, 2000, within=90)
        for worker in running:
            assert await worker.stop() == 0
    sent = Counter(r.msg_id for r in receiver.requests)
    assert len(sent) == 2000 and set(sent.values()) == {1}  # each sent exactly once
    assert all(r.verified_by == ["current"] for r in receiver.requests)
    async with db.unit_of_work(readonly=True) as session:
        assert await session.scalar(select(func.count()).select_from(Attempt)) == 2000


async def listeners(db: Database) -> list[int]:
    async with db.unit_of_work(readonly=True) as session:
        rows = await session.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = 'rrg-dispatcher'")
        )
        return list(rows)


@pytest.mark.postgresql_only
async def test_a_worker_wakes_within_a_second_of_a_commit_elsewhere_and_relistens(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    database_url: str,
    tmp_path: Path,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/notified"))
    found = await incident(client, lead)
    # Polling every 60 s: only NOTIFY can wake it in time.
    async with workers(database_url, tmp_path, RRG_WEBHOOK_POLL_SECONDS="60") as (worker,):
        for attempt in range(2):
            deadline = time.monotonic() + 10
            while len(pids := await listeners(db)) != 1:
                assert time.monotonic() < deadline, "the worker is not listening"
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # long past its start-up catch-up claim
            committed = time.monotonic()
            await emit(db, escalated(found["id"], attempt))
            await receiver.wait_for(attempt + 1, "/notified", within=1.0)
            assert receiver.at("/notified")[-1].at - committed < 1.0
            if attempt == 0:  # cut its LISTEN connection: it must reconnect
                async with db.unit_of_work(readonly=True) as session:
                    await session.execute(
                        text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]}
                    )
                while pids[0] in await listeners(db):  # noqa: ASYNC110 - polling the database
                    await asyncio.sleep(0.05)
        assert await worker.stop() == 0
