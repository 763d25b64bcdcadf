"""The dispatcher as it runs in the app and in `rrg worker`: woken by commits, bounded in
concurrency, finishing what is in flight when stopped; and the retention job."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from app import clock
from app.config import Settings
from app.db import Database
from app.outbox.models import OutboxEvent
from app.outbox.service import emit_many
from app.webhooks.dispatcher import Dispatcher
from app.webhooks.models import Attempt, Delivery
from app.worker import purge_webhook_history
from tests.conftest import MakeActor
from tests.escalation.helpers import Clock
from tests.webhooks.helpers import deliveries, emit, escalated, incident, subscribe
from tests.webhooks.receiver import Receiver, Reply


def running(settings: Settings, db: Database, **changes: object) -> Dispatcher:
    """A dispatcher that polls rarely, so only the commit signal can wake it quickly."""
    dispatcher = Dispatcher.from_settings(
        settings.model_copy(update={"webhook_poll_seconds": 30, **changes}), db
    )
    dispatcher.listen_url = None  # in-process signal only (LISTEN: see test_processes)
    return dispatcher


async def test_a_running_dispatcher_sends_within_a_second_of_the_commit(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    settings: Settings,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/live"))
    found = await incident(client, lead)
    dispatcher = running(settings, db)
    await dispatcher.start()
    try:
        await asyncio.sleep(0.3)  # idle, waiting for up to 30 s
        for n in range(1, 4):
            committed = time.monotonic()
            await emit(db, escalated(found["id"], n))
            await receiver.wait_for(n, "/live", within=1.0)
            assert receiver.at("/live")[-1].at - committed < 1.0

        async def rolled_back() -> None:
            async with db.unit_of_work(commit=False) as session:
                await emit_many(session, [escalated(found["id"], 9)])

        await rolled_back()
        await asyncio.sleep(0.3)
        assert len(receiver.at("/live")) == 3
    finally:
        await dispatcher.stop()
        await dispatcher.aclose()
    assert [d.status for d in await deliveries(db)] == ["delivered"] * 3


async def test_concurrency_is_bounded_per_subscription_and_overall(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    settings: Settings,
):
    lead = await make_actor("lead", "DOE")
    paths = [f"/busy{n}" for n in range(4)]
    for path in paths:
        await subscribe(client, lead, receiver.url(path))
        # Each reply is held until six are in flight at once, or for four seconds: the last
        # deliveries never see six, and are answered well within the sender's timeout, which
        # this test lengthens so that a loaded machine has time to reach six.
        receiver.script(path, Reply(delay=4.0, until_in_flight=6))
    found = await incident(client, lead)
    await emit(db, *(escalated(found["id"], n) for n in range(5)))  # 20 deliveries
    dispatcher = running(
        settings,
        db,
        webhook_concurrency=6,
        webhook_concurrency_per_subscription=2,
        webhook_timeout_seconds=10,
    )
    await dispatcher.start()
    try:
        await receiver.wait_for(20, within=40)
    finally:
        await dispatcher.stop()
        await dispatcher.aclose()
    assert max(receiver.peak[p] for p in paths) == 2
    assert receiver.peak_total == 6
    assert [d.status for d in await deliveries(db)] == ["delivered"] * 20


async def test_stopping_finishes_and_records_the_attempts_in_flight(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    settings: Settings,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/finishing"))
    receiver.script("/finishing", Reply(delay=0.5))
    found = await incident(client, lead)
    dispatcher = running(settings, db)
    await dispatcher.start()
    await emit(db, escalated(found["id"]))
    await receiver.wait_for(1, "/finishing")
    await dispatcher.stop()
    await dispatcher.aclose()
    (delivery,) = await deliveries(db)
    assert delivery.status == "delivered" and delivery.lease_token is None


async def test_retention_deletes_old_finished_deliveries_with_their_attempts_and_events(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/old"))
    await subscribe(client, lead, receiver.url("/gone"))
    receiver.script("/gone", Reply(410))
    found = await incident(client, lead)
    await emit(db, escalated(found["id"], 1))
    await dispatcher.drain()  # delivered to /old, failed at /gone: old history
    clock.advance(timedelta(days=29))
    receiver.script("/old", Reply(500))
    await emit(db, escalated(found["id"], 2))
    await dispatcher.drain()  # still being retried: kept
    clock.advance(timedelta(days=2))

    await purge_webhook_history(db, timedelta(days=30))

    (kept,) = await deliveries(db)
    assert kept.status == "pending" and kept.attempt_count == 1
    async with db.unit_of_work(readonly=True) as session:
        events = (await session.scalars(select(OutboxEvent.id))).all()
        assert events == [kept.outbox_event_id]
        assert await session.scalar(select(func.count()).select_from(Attempt)) == 1


async def test_one_subscriptions_backlog_leaves_no_other_slot_empty(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    settings: Settings,
):
    lead = await make_actor("lead", "DOE")
    first = await subscribe(client, lead, receiver.url("/first"))
    await subscribe(client, lead, receiver.url("/second"))
    found = await incident(client, lead)
    await emit(db, *(escalated(found["id"], n) for n in range(3)))  # 3 deliveries each
    # The first subscription's three fall due first: the head of the queue is all its own.
    async with db.unit_of_work() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.subscription_id == uuid.UUID(first["id"]))
            .values(next_attempt_at=clock.now() - timedelta(minutes=1))
        )
    dispatcher = Dispatcher.from_settings(
        settings.model_copy(update={"webhook_concurrency_per_subscription": 2}), db
    )
    try:
        claimed = await dispatcher.claim(3)
    finally:
        await dispatcher.aclose()
    by_subscription = Counter(str(c.subscription_id) for c in claimed)
    assert sorted(by_subscription.values()) == [1, 2]
    assert by_subscription[first["id"]] == 2
