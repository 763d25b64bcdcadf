"""The reliability suite (SPEC §11 R2, R3; ``make soak``): real ``rrg serve`` replicas and
``rrg worker`` processes (deploy/cluster.py) on one PostgreSQL, under load and faults —
replicas sweeping together, ``kill -9`` of an API replica and of the worker, connections
terminated by the database mid-transaction. Afterwards the counts must agree: one incident
per Idempotency-Key, one timeline event and one outbox event per change, each (item,
level) escalated once, each delivery sent (again only if it was in flight at a kill, with
the same ``webhook-id``), every hash chain intact.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from app.config import Settings
from app.db import Database
from app.escalation.models import Escalation
from app.incidents.models import Incident
from app.outbox.models import OutboxEvent
from app.timeline import service as timeline
from app.timeline.models import TimelineEvent
from app.webhooks.models import Delivery, webhook_id
from deploy.cluster import DEV_ENV, Cluster
from tests.conftest import TEST_AUDIT_KEY, Actor, MakeActor
from tests.escalation.helpers import consistent_trail, make_team
from tests.escalation.test_replicas import N_INCIDENTS, TOTAL, Seeded, seed_overdue
from tests.incidents.helpers import report
from tests.webhooks.helpers import subscribe
from tests.webhooks.receiver import Receiver

# Replicas share one PostgreSQL: the cluster runs on it alone.
pytestmark = [pytest.mark.soak, pytest.mark.slow, pytest.mark.postgresql_only]

HOOK = "/cluster"


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
async def make_cluster(
    database_url: str, settings: Settings, tmp_path: Path
) -> AsyncIterator[ClusterFactory]:
    made: list[Cluster] = []

    def make(replicas: int, workers: int = 1, **env: str) -> Cluster:
        cluster = Cluster(
            database_url,
            replicas=replicas,
            workers=workers,
            base_port=random.randrange(20_000, 40_000, 200),
            log_dir=tmp_path / f"cluster-{len(made)}",
            env={
                # The same keys as the test process (webhook secrets, idempotency seals,
                # timeline chains), loopback receivers allowed, sweeps every second.
                "RRG_SECRET_KEY": settings.secret_key.get_secret_value(),
                "RRG_AUDIT_KEY": TEST_AUDIT_KEY,
                "RRG_WEBHOOK_ALLOWLIST": "127.0.0.1",
                "RRG_SWEEP_INTERVAL_SECONDS": "1",
                "RRG_WEBHOOK_LEASE_SECONDS": "5",
                "RRG_DB_POOL_SIZE": "5",
                "RRG_DB_MAX_OVERFLOW": "5",
                "RRG_LOG_LEVEL": "WARNING",
                **env,
            },
        )
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        for member in cluster.members:
            member.kill()


# --- load -----------------------------------------------------------------------------------


async def create_until_answered(
    bases: Callable[[], list[str]], actor: Actor, key: str, within: float = 150
) -> dict[str, Any]:
    """POST an incident with ``Idempotency-Key: key`` until a replica answers 201, retrying
    (same key, same body, next replica) on a lost connection, a 503 or an in-flight 409."""
    body = report(title=f"Rare-earth supply disruption {key}")
    headers = {**actor.headers, "Idempotency-Key": key}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=30) as client:
        for attempt in itertools.count():
            targets = bases()
            base = targets[attempt % len(targets)]
            try:
                response = await client.post(f"{base}/api/v1/incidents", json=body, headers=headers)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 201:
                created: dict[str, Any] = response.json()
                return created
            if response is not None and response.status_code not in (409, 500, 503):
                raise AssertionError(f"{key}: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{key}: no 201 within {within}s")
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def load(
    bases: Callable[[], list[str]], actor: Actor, keys: list[str], concurrency: int = 8
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str) -> dict[str, Any]:
        async with gate:
            return await create_until_answered(bases, actor, key)

    return list(await asyncio.gather(*(one(k) for k in keys)))


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {within}s: {what}")


# --- what the database holds ----------------------------------------------------------------


async def counts(db: Database) -> dict[str, int]:
    async with db.unit_of_work(readonly=True) as session:

        async def count(query: Any) -> int:
            return int(await session.scalar(query) or 0)

        return {
            "incidents": await count(select(func.count()).select_from(Incident)),
            "created_events": await count(
                select(func.count()).where(TimelineEvent.type == "incident.created")
            ),
            "reported_outbox": await count(
                select(func.count()).where(OutboxEvent.type == "incident.reported")
            ),
            "outbox": await count(select(func.count()).select_from(OutboxEvent)),
            "deliveries": await count(select(func.count()).select_from(Delivery)),
            "delivered": await count(select(func.count()).where(Delivery.status == "delivered")),
            "pending": await count(select(func.count()).where(Delivery.status == "pending")),
            "escalations": await count(select(func.count()).select_from(Escalation)),
        }


async def delivery_ids(db: Database) -> set[str]:
    async with db.unit_of_work(readonly=True) as session:
        return {webhook_id(i) for i in (await session.scalars(select(Delivery.id))).all()}


async def chains_intact(db: Database) -> None:
    async with db.unit_of_work(readonly=True) as session:
        assert await timeline.verify(session) == []


async def start_keys_after_seed(db: Database) -> None:
    """Seeded incidents took keys RRG-0001…; new ones continue after them."""
    async with db.unit_of_work() as session:
        top = await session.scalar(select(func.max(Incident.number)))
        await session.execute(
            text("SELECT setval('incident_numbers', :top + 1, false)"), {"top": top or 0}
        )


def seeded_at() -> datetime:
    """Three days ago: every seeded item has crossed each of its levels by now."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


METRICS_AUTH = {"Authorization": f"Bearer {DEV_ENV['RRG_METRICS_TOKEN']}"}
EXCERPT = (
    "rrg_escalations_total",
    "rrg_webhook_deliveries_total",
    "rrg_webhook_dispatch_lag_seconds_count",
    "rrg_webhook_dispatch_lag_seconds_sum",
    "rrg_outbox_",
    "rrg_webhook_dispatcher_lag_seconds",
    "rrg_sweep_duration_seconds_count",
    "rrg_sweep_duration_seconds_sum",
    "rrg_db_pool_connections",
    "rrg_sse_clients",
    'rrg_http_request_duration_seconds_count{method="POST",route="/api/v1/incidents"',
    'rrg_http_request_duration_seconds_bucket{le="0.1",method="POST",route="/api/v1/incidents"',
)
scraped_text: dict[str, str] = {}


async def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(base + "/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200, response.text
    port = base.rsplit(":", 1)[1]
    scraped_text[port] = response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def metrics_text_after(delay: float, members: dict[str, str]) -> dict[str, str]:
    """The /metrics text of each named member ``delay`` seconds from now (a scrape under load)."""
    await asyncio.sleep(delay)
    async with httpx.AsyncClient(timeout=10) as client:
        return {
            name: (await client.get(base + "/metrics", headers=METRICS_AUTH)).text
            for name, base in members.items()
        }


def print_excerpt(title: str, texts: dict[str, str]) -> None:
    print(f"\n{title}")
    for name, exposition in texts.items():
        for line in exposition.splitlines():
            if line.startswith(EXCERPT):
                print(f"  {name}: {line}")


def received_ids(receiver: Receiver) -> Counter[str]:
    return Counter(r.msg_id for r in receiver.at(HOOK))


# --- the suite ------------------------------------------------------------------------------


async def test_three_replicas_and_a_worker_escalate_each_level_once_and_send_each_once(
    make_cluster: ClusterFactory,
    db: Database,
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    receiver: Receiver,
):
    team = await make_team(make_actor)
    sub = await subscribe(client, team.admin, receiver.url(HOOK), event_types=[])
    receiver.trust(HOOK, sub["secret"])
    seeded: Seeded = await seed_overdue(db, team, seeded_at())
    await start_keys_after_seed(db)
    cluster = make_cluster(replicas=3, workers=1, RRG_SCHEDULER="on")
    await cluster.start()
    started = time.monotonic()
    watched = (cluster.members[0], cluster.member("worker-1"))
    under_load = asyncio.create_task(metrics_text_after(2.0, {m.name: m.base for m in watched}))
    keys = [f"r3-{n}" for n in range(90)]
    created = await load(lambda: [m.base for m in cluster.api], team.reporter, keys)
    assert len({c["id"] for c in created}) == len(keys)

    async def settled() -> bool:
        now = await counts(db)
        return (
            now["escalations"] == TOTAL
            and now["pending"] == 0
            and now["delivered"] == now["deliveries"]
            and len(received_ids(receiver)) >= now["deliveries"]
        )

    await until(settled, 240, "every escalation made and every delivery received")
    elapsed = time.monotonic() - started
    # Each process counts what it did: summed over the targets, the metrics agree with the
    # database (what Prometheus would show with sum()).
    scraped = {m.name: await scrape(m.base) for m in cluster.members}
    escalated = sum(
        v
        for samples in scraped.values()
        for (name, _), v in samples.items()
        if name == "rrg_escalations_total"
    )
    delivered = sum(
        v
        for samples in scraped.values()
        for (name, labels), v in samples.items()
        if name == "rrg_webhook_deliveries_total" and ("result", "delivered") in labels
    )
    codes = await cluster.stop()
    assert all(code in (0, -15) for code in codes.values()), codes

    final = await counts(db)
    found = await consistent_trail(db)  # one timeline and one outbox event per ledger row
    assert found.ledger_keys() == seeded.expected()  # each (item, level) once
    seeded_incidents = len(seeded.untriaged) + len(seeded.silent) + N_INCIDENTS
    assert final["incidents"] == seeded_incidents + len(keys)
    assert final["created_events"] == final["reported_outbox"] == len(keys)
    assert final["deliveries"] == final["outbox"] == final["delivered"]
    received = received_ids(receiver)
    assert set(received) == await delivery_ids(db)
    assert max(received.values()) == 1  # each delivery sent once
    await chains_intact(db)
    assert escalated == TOTAL and delivered == final["deliveries"]
    print_excerpt("/metrics 2 s into the load:", await under_load)
    print_excerpt(
        "/metrics at the end of the load:", {m.name: scraped_text[str(m.port)] for m in watched}
    )
    print(
        f"\nR3: 3 replicas + 1 worker: {final['escalations']} escalations, "
        f"{final['deliveries']} deliveries each received once, {len(keys)} creates, "
        f"settled in {elapsed:.1f}s"
    )


async def test_kill_9_of_an_api_replica_and_the_worker_loses_nothing(
    make_cluster: ClusterFactory,
    db: Database,
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    receiver: Receiver,
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url(HOOK), event_types=[])
    receiver.trust(HOOK, sub["secret"])
    cluster = make_cluster(replicas=2, workers=1, RRG_SCHEDULER="off")
    await cluster.start()
    api_1, worker = cluster.member("api-1"), cluster.member("worker-1")
    keys = [f"k9-{n}" for n in range(160)]
    load_task = asyncio.create_task(
        load(lambda: [m.base for m in cluster.api], lead, keys, concurrency=12)
    )

    # kill -9 an API replica mid-load, restart it; the clients retry on the other one.
    await until(lambda: _at_least(db, "incidents", 40), 60, "40 incidents before killing api-1")
    api_1.kill()
    await asyncio.sleep(1)
    await cluster.restart("api-1")
    # kill -9 the worker mid-fan-out, restart it.
    await until(lambda: _received_at_least(receiver, 30), 60, "30 deliveries before the kill")
    worker.kill()
    in_flight_at_kill = await _pending(db)
    await asyncio.sleep(1)
    await cluster.restart("worker-1")

    created = await load_task
    assert len({c["id"] for c in created}) == len(keys)  # each key: one incident

    async def settled() -> bool:
        now = await counts(db)
        return now["pending"] == 0 and len(received_ids(receiver)) >= now["deliveries"]

    await until(settled, 120, "every delivery delivered after the restarts")
    codes = await cluster.stop()
    final = await counts(db)
    assert final["incidents"] == len(keys)
    assert final["created_events"] == final["reported_outbox"] == len(keys)
    assert final["deliveries"] == final["outbox"] == final["delivered"] == len(keys)
    received = received_ids(receiver)
    assert set(received) == await delivery_ids(db)  # nothing lost
    duplicates = {msg_id: n for msg_id, n in received.items() if n > 1}
    # Sent again only if in flight at the kill (leased, unrecorded), under the same id.
    assert len(duplicates) <= min(in_flight_at_kill, 64), duplicates
    await chains_intact(db)
    assert api_1.starts == worker.starts == 2
    print(
        f"\nR2: kill -9 of api-1 and worker-1: {final['incidents']} incidents for "
        f"{len(keys)} keys, {final['deliveries']} deliveries, {len(duplicates)} resent "
        f"(same webhook-id), exit codes {codes}"
    )


async def test_connections_terminated_mid_transaction_leave_no_partial_writes(
    make_cluster: ClusterFactory,
    db: Database,
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    receiver: Receiver,
):
    team = await make_team(make_actor)
    sub = await subscribe(client, team.admin, receiver.url(HOOK), event_types=[])
    receiver.trust(HOOK, sub["secret"])
    seeded: Seeded = await seed_overdue(db, team, seeded_at())
    await start_keys_after_seed(db)
    cluster = make_cluster(replicas=2, workers=1, RRG_SCHEDULER="on")
    await cluster.start()
    keys = [f"pg-{n}" for n in range(120)]
    load_task = asyncio.create_task(
        load(lambda: [m.base for m in cluster.api], team.reporter, keys, concurrency=8)
    )
    terminated = 0
    killer = Database(db.url.replace("+asyncpg", ""))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async with killer.engine.connect() as conn:
                result = await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND backend_type = 'client backend'"
                    )
                )
                terminated += int(result.scalar_one())
            await asyncio.sleep(0.4)
    finally:
        await killer.dispose()
    await db.engine.dispose()  # this process's own connections were terminated too
    created = await load_task
    assert len({c["id"] for c in created}) == len(keys)

    async def settled() -> bool:
        now = await counts(db)
        return (
            now["escalations"] == TOTAL
            and now["pending"] == 0
            and len(received_ids(receiver)) >= now["deliveries"]
        )

    await until(settled, 240, "recovered: every escalation made and delivery received")
    # Recovered without a restart: every replica is ready on its first start.
    async with httpx.AsyncClient(timeout=5) as http:
        for member in cluster.members:
            assert member.starts == 1 and member.running
            assert (await http.get(member.base + "/readyz")).status_code == 200
    await cluster.stop()
    final = await counts(db)
    found = await consistent_trail(db)
    assert found.ledger_keys() == seeded.expected()
    assert final["created_events"] == final["reported_outbox"] == len(keys)
    assert final["deliveries"] == final["outbox"] == final["delivered"]
    assert set(received_ids(receiver)) == await delivery_ids(db)
    await chains_intact(db)
    assert terminated > 20
    print(
        f"\nDB faults: {terminated} connections terminated over 10s; {len(keys)} creates "
        f"(one incident each), {final['escalations']} escalations once each, "
        f"{final['deliveries']} deliveries, chains intact"
    )


async def _at_least(db: Database, what: str, n: int) -> bool:
    return (await counts(db))[what] >= n


async def _received_at_least(receiver: Receiver, n: int) -> bool:
    return len(received_ids(receiver)) >= n


async def _pending(db: Database) -> int:
    return (await counts(db))["pending"]
