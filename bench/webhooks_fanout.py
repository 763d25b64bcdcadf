"""P4: webhook fan-out to a local receiver (PostgreSQL, one `rrg worker` process).

Set-up (a dedicated database, ``<bench db>_webhooks``: public schema dropped, real
migrations): a DOE lead, an incident, SUBSCRIPTIONS subscriptions to one receiver, and one
`rrg worker` process with RRG_WEBHOOK_CONCURRENCY=CONCURRENCY. The receiver is a minimal
ASGI app under uvicorn in its own process that notes when each `webhook-id` arrives.

Measured:
- throughput: EVENTS events committed in one transaction (EVENTS x SUBSCRIPTIONS
  deliveries); deliveries per second from the commit to the last receipt;
- latency: TRICKLE commits of one event each (SUBSCRIPTIONS deliveries), every GAP seconds;
  commit-to-receipt time of each delivery, p50 and p99.
Baseline, same run, same receiver: CONCURRENCY clients posting the same bodies directly
(requests per second), and single direct posts at the same pace (send-to-receipt p50/p99).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from app import migrate
from app.auth.models import User
from app.config import Settings
from app.db import Database
from app.incidents.models import Incident
from app.ministries.models import Ministry
from app.outbox.service import NewOutboxEvent, emit_many
from app.webhooks.models import Attempt, Delivery, Subscription
from app.webhooks.secrets import SecretBox, new_secret
from bench.common import BENCH_POSTGRES_URL, Figure, free_port, fresh_database, percentile

NAME = "webhooks_fanout"
SUBSCRIPTIONS = 4
CONCURRENCY = 64
PER_SUBSCRIPTION = CONCURRENCY // SUBSCRIPTIONS
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
EVENTS = 125 if QUICK else 2_500  # x SUBSCRIPTIONS deliveries
TRICKLE = 20 if QUICK else 200
GAP = 0.05
REPO = Path(__file__).resolve().parent.parent
URL = BENCH_POSTGRES_URL + "_webhooks"


# --- the receiver (run as `python -m bench.webhooks_fanout receive PORT`) ------------------


def receive(port: int) -> None:
    import uvicorn

    arrived: dict[str, float] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        body = b""
        if scope["method"] == "POST":
            for key, value in scope["headers"]:
                if key == b"webhook-id":
                    arrived.setdefault(value.decode(), time.time())
        elif scope["path"] == "/arrived":
            body = json.dumps(arrived).encode()
        elif scope["path"] == "/count":
            body = str(len(arrived)).encode()
        elif scope["path"] == "/reset":
            arrived.clear()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
    )


@contextmanager
def _process(args: list[str], env: dict[str, str], ready: Any) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not ready(log):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{args} did not start:\n{log.read().decode()}")
                time.sleep(0.05)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def _receiver() -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def up(_log: Any) -> bool:
        try:
            return httpx.get(f"{base}/count", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    args = [sys.executable, "-m", "bench.webhooks_fanout", "receive", str(port)]
    with _process(args, {**os.environ, "PYTHONPATH": str(REPO)}, up):
        yield base


@contextmanager
def _worker() -> Iterator[None]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RRG_DATABASE_URL": URL,
        "RRG_WEBHOOK_ALLOWLIST": "127.0.0.1",
        "RRG_WEBHOOK_CONCURRENCY": str(CONCURRENCY),
        "RRG_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION": str(PER_SUBSCRIPTION),
        "RRG_SWEEP_INTERVAL_SECONDS": "3600",
    }

    def up(log: Any) -> bool:
        log.seek(0)
        return b"RRG worker:" in log.read()

    with _process([sys.executable, "-m", "app", "worker"], env, up):
        time.sleep(1)  # its LISTEN connection and first (empty) claim
        yield


# --- set-up -----------------------------------------------------------------------------


async def _seed(db: Database, receiver: str) -> uuid.UUID:
    box = SecretBox.from_settings(Settings(database_url=URL))
    now = datetime.now(UTC)
    async with db.unit_of_work() as session:
        doe = await session.scalar(select(Ministry).where(Ministry.code == "DOE"))
        assert doe is not None
        user_id, incident_id = uuid.uuid4(), uuid.uuid4()
        await session.execute(
            insert(User),
            [
                {
                    "id": user_id,
                    "email": "bench.lead@doe.example",
                    "display_name": "Bench lead",
                    "ministry_id": doe.id,
                    "role": "lead",
                    "timezone": "America/New_York",
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        await session.execute(
            insert(Incident),
            [
                {
                    "id": incident_id,
                    "number": 1,
                    "key": "RRG-0001",
                    "title": "Gallium export licensing tightened",
                    "summary": "",
                    "category": "export_control",
                    "affected_sectors": [],
                    "days_of_cover": {},
                    "sources": [],
                    "tlp": "GREEN",
                    "severity": "SEV2",
                    "status": "reported",
                    "reporter_id": user_id,
                    "reporter_ministry_id": doe.id,
                    "reported_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        for n in range(SUBSCRIPTIONS):
            sub_id = uuid.uuid4()
            session.add(
                Subscription(
                    id=sub_id,
                    ministry_id=doe.id,
                    url=f"{receiver}/hook/{n}",
                    event_types=[],
                    max_tlp="GREEN",
                    description=f"bench {n}",
                    active=True,
                    secret_ciphertext=box.seal(new_secret(), sub_id),
                    created_at=now,
                    updated_at=now,
                )
            )
    return incident_id


def _event(incident_id: uuid.UUID, n: int) -> NewOutboxEvent:
    return NewOutboxEvent(
        "incident.escalated",
        incident_id,
        {"reason": "triage_overdue", "level": n % 2 + 1, "reported_at": "2026-12-01T09:00:00Z"},
    )


async def _arrived(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    body: dict[str, float] = (await client.get(f"{base}/arrived")).json()
    return body


async def _wait_count(client: httpx.AsyncClient, base: str, count: int, within: float) -> float:
    deadline = time.monotonic() + within
    while int((await client.get(f"{base}/count")).text) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the receiver got fewer than {count} deliveries in time")
        await asyncio.sleep(0.01)
    return time.time()


# --- measuring ----------------------------------------------------------------------------


async def _through_the_worker(base: str) -> tuple[float, list[float], int]:
    db = Database(URL)
    async with httpx.AsyncClient(timeout=30) as client:
        incident_id = await _seed(db, base)
        # Throughput: one commit, EVENTS x SUBSCRIPTIONS deliveries.
        total = EVENTS * SUBSCRIPTIONS
        async with db.unit_of_work() as session:
            await emit_many(session, [_event(incident_id, n) for n in range(EVENTS)])
        committed = time.time()
        finished = await _wait_count(client, base, total, within=300)
        rate = total / (finished - committed)
        print(f"{NAME}: {total:,} deliveries in {finished - committed:.1f} s", file=sys.stderr)
        await client.post(f"{base}/reset")
        # Latency: one event per commit, at a steady pace.
        commits: dict[uuid.UUID, float] = {}
        for n in range(TRICKLE):
            async with db.unit_of_work() as session:
                (event_id,) = await emit_many(session, [_event(incident_id, n)])
            commits[event_id] = time.time()
            await asyncio.sleep(GAP)
        async with db.unit_of_work(readonly=True) as session:
            rows = (
                await session.execute(
                    select(Delivery.id, Delivery.outbox_event_id).where(
                        Delivery.outbox_event_id.in_(list(commits))
                    )
                )
            ).all()
        deadline = time.monotonic() + 60
        while True:
            arrived = await _arrived(client, base)
            if all(f"msg_{d.hex}" in arrived for d, _ in rows):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the trickle's deliveries did not all arrive")
            await asyncio.sleep(0.1)
        async with db.unit_of_work(readonly=True) as session:
            retried = await session.scalar(
                select(func.count()).select_from(Attempt).where(Attempt.outcome != "delivered")
            )
            undelivered = await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status != "delivered")
            )
    await db.dispose()
    latencies = [(arrived[f"msg_{d.hex}"] - commits[e]) * 1000 for d, e in rows]
    if len(latencies) != TRICKLE * SUBSCRIPTIONS:
        raise RuntimeError(f"{len(latencies)} deliveries for {TRICKLE} events")
    print(
        f"{NAME}: failed attempts {retried}, deliveries not (yet) marked delivered {undelivered}",
        file=sys.stderr,
    )
    return rate, latencies, total


async def _directly(base: str, total: int) -> tuple[float, list[float]]:
    """The same receiver, the same bodies and concurrency, no database and no worker."""
    body = json.dumps(
        {
            "type": "incident.escalated",
            "timestamp": "2026-12-01T09:00:00Z",
            "data": {"x": "y" * 300},
        }
    ).encode()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:
        await client.post(f"{base}/reset")
        queue = iter(range(total))

        async def one_client() -> None:
            for n in queue:
                await client.post(f"{base}/hook/0", content=body, headers={"webhook-id": f"d{n}"})

        started = time.time()
        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
        rate = total / (time.time() - started)
        await client.post(f"{base}/reset")
        sent: dict[str, float] = {}
        for n in range(TRICKLE * SUBSCRIPTIONS // SUBSCRIPTIONS):
            for s in range(SUBSCRIPTIONS):
                sent[f"t{n}.{s}"] = time.time()
                await client.post(
                    f"{base}/hook/{s}", content=body, headers={"webhook-id": f"t{n}.{s}"}
                )
            await asyncio.sleep(GAP)
        arrived = await _arrived(client, base)
    return rate, [(arrived[k] - t) * 1000 for k, t in sent.items()]


def run() -> list[Figure]:
    asyncio.run(fresh_database(URL))
    migrate.upgrade(URL)
    with _receiver() as base:
        with _worker():
            load = os.getloadavg()[0]
            rate, latencies, total = asyncio.run(_through_the_worker(base))
            load = max(load, os.getloadavg()[0])
        direct_rate, direct_latencies = asyncio.run(_directly(base, total))
    print(
        f"{NAME}: {total:,} deliveries to {SUBSCRIPTIONS} subscriptions, one worker "
        f"(concurrency {CONCURRENCY}); 1-min load average up to {load:.1f} on "
        f"{os.cpu_count()} CPUs (worker, receiver, PostgreSQL and this process share them)",
        file=sys.stderr,
    )
    baseline = f"receiver hit directly, {CONCURRENCY} clients"
    paced = "direct posts, same pace"
    return [
        Figure(NAME, "deliveries/s", rate, "/s", direct_rate, baseline),
        Figure(
            NAME,
            "commit-to-receipt p50",
            percentile(latencies, 50),
            "ms",
            percentile(direct_latencies, 50),
            paced,
        ),
        Figure(
            NAME,
            "commit-to-receipt p99",
            percentile(latencies, 99),
            "ms",
            percentile(direct_latencies, 99),
            paced,
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["receive"]:
        receive(int(sys.argv[2]))
