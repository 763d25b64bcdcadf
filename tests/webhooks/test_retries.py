"""Retries and failure handling (SPEC §7), with the clock moved instead of waiting: the retry
schedule with its jitter, Retry-After, 410, redirects, timeouts, expired leases, and
subscriptions disabled after failing for five days."""

from __future__ import annotations

import email.utils
import uuid
from datetime import timedelta

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import update

from app.config import Settings
from app.db import Database
from app.outbox.models import OutboxEvent
from app.outbox.service import emit_many
from app.webhooks.dispatcher import Dispatcher, Outcome
from app.webhooks.models import Subscription
from app.webhooks.vocabulary import JITTER, RETRY_SCHEDULE
from tests.conftest import MakeActor
from tests.escalation.helpers import Clock
from tests.webhooks.helpers import (
    attempts,
    deliveries,
    emit,
    escalated,
    incident,
    subscribe,
    subscription_row,
)
from tests.webhooks.receiver import Receiver, Reply

SECOND = timedelta(seconds=1)


def delivery_totals() -> dict[str, float]:
    """This process's webhook deliveries by result, as /metrics exposes them."""
    return {
        result: REGISTRY.get_sample_value("rrg_webhook_deliveries_total", {"result": result}) or 0
        for result in ("delivered", "retried", "failed")
    }


async def test_retries_follow_the_schedule_with_jitter_then_the_delivery_fails(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url("/down"))
    receiver.trust("/down", sub["secret"])
    receiver.script("/down", Reply(500, body=b"database unavailable"))
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]))
    before = delivery_totals()

    sent_at = []
    for attempt in range(1, len(RETRY_SCHEDULE) + 1):
        assert await dispatcher.drain() == 1, f"attempt {attempt}"
        sent_at.append(clock.at)
        (delivery,) = await deliveries(db)
        assert delivery.attempt_count == attempt and delivery.last_status_code == 500
        if attempt == len(RETRY_SCHEDULE):
            break
        assert delivery.status == "pending" and delivery.next_attempt_at is not None
        wait = delivery.next_attempt_at - clock.at
        step = RETRY_SCHEDULE[attempt]
        assert step * (1 - JITTER) <= wait <= step * (1 + JITTER), (attempt, wait)
        clock.set(delivery.next_attempt_at - SECOND)
        assert await dispatcher.drain() == 0  # not before it is due
        clock.set(delivery.next_attempt_at)

    assert (delivery.status, delivery.next_attempt_at) == ("failed", None)
    assert await dispatcher.drain() == 0
    requests = receiver.at("/down")
    assert len(requests) == len(RETRY_SCHEDULE)
    assert {r.msg_id for r in requests} == {f"msg_{delivery.id.hex}"}
    assert [r.timestamp for r in requests] == [int(t.timestamp()) for t in sent_at]
    assert all(r.verified_by == ["current"] for r in requests)
    log = await attempts(db, delivery.id)
    assert [a.number for a in log] == list(range(1, 9))
    assert {(a.outcome, a.status_code, a.response_excerpt) for a in log} == {
        ("http_error", 500, "database unavailable")
    }
    after = delivery_totals()
    assert after["retried"] - before["retried"] == 7
    assert after["failed"] - before["failed"] == 1
    # The failure is a webhook outcome on the incident's timeline (SPEC §5).
    timeline = await client.get(f"/api/v1/incidents/{found['id']}/timeline", headers=lead.headers)
    (outcome,) = [e for e in timeline.json()["items"] if e["type"] == "webhook.delivery_failed"]
    assert outcome["data"]["delivery_id"] == str(delivery.id)
    assert outcome["data"]["attempts"] == 8 and outcome["data"]["last_error"] == "HTTP 500"
    # The whole schedule took about 33 hours: failing, but not yet for five days.
    row = await subscription_row(db, sub["id"])
    assert row.active and row.failing_since == sent_at[0]


async def test_retry_after_is_honoured_in_seconds_and_as_an_http_date(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/busy"))
    later = clock.at + timedelta(hours=3, seconds=1)
    receiver.script(
        "/busy",
        Reply(503, {"Retry-After": "120"}),
        Reply(429, {"Retry-After": email.utils.format_datetime(later, usegmt=True)}),
        Reply(200),
    )
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]))

    await dispatcher.drain()
    (delivery,) = await deliveries(db)
    assert delivery.next_attempt_at == clock.at + timedelta(seconds=120)  # not ~5 s
    clock.set(delivery.next_attempt_at)
    await dispatcher.drain()
    (delivery,) = await deliveries(db)
    assert delivery.next_attempt_at == later  # not ~5 min
    clock.set(later)
    await dispatcher.drain()
    (delivery,) = await deliveries(db)
    assert delivery.status == "delivered" and delivery.attempt_count == 3


async def test_410_disables_the_subscription_and_tells_the_ministry(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead, admin = await make_actor("lead", "DOE"), await make_actor("admin", "DOE")
    meti = await make_actor("admin", "METI")
    gone = await subscribe(client, lead, receiver.url("/gone"), event_types=["incident.escalated"])
    other = await subscribe(
        client, admin, receiver.url("/other"), event_types=["webhook.endpoint_disabled"]
    )
    await subscribe(client, meti, receiver.url("/meti"))
    receiver.trust("/other", other["secret"])
    receiver.script("/gone", Reply(410, body=b"no such hook"))
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]))
    before = delivery_totals()

    await dispatcher.drain()  # the 410, then webhook.endpoint_disabled to /other
    await dispatcher.drain()

    row = await subscription_row(db, gone["id"])
    assert (row.active, row.disabled_reason, row.disabled_at) == (False, "gone", clock.at)
    (failed,) = await deliveries(db, subscription_id=row.id)
    assert failed.status == "failed" and failed.attempt_count == 1
    assert delivery_totals()["failed"] - before["failed"] == 1
    (told,) = receiver.at("/other")
    assert told.verified_by == ["current"]
    body = told.json()
    assert body["type"] == "webhook.endpoint_disabled"
    assert body["data"]["subscription_id"] == gone["id"]
    assert body["data"]["reason"] == "gone" and body["data"]["url"] == gone["url"]
    # Another ministry's subscriptions are not told.
    assert [r.json()["type"] for r in receiver.at("/meti")] == ["incident.escalated"]
    inbox = (await client.get("/api/v1/me/notifications", headers=admin.headers)).json()
    (note,) = inbox["items"]
    assert note["type"] == "webhook.endpoint_disabled" and note["incident_id"] is None
    assert gone["url"] in note["title"]
    assert (await client.get("/api/v1/me/notifications", headers=lead.headers)).json()[
        "items"
    ] == []

    await emit(db, escalated(found["id"], level=2))  # nothing more for the disabled one
    assert [d.id for d in await deliveries(db, subscription_id=row.id)] == [failed.id]
    current = await client.get(f"/api/v1/webhooks/subscriptions/{gone['id']}", headers=lead.headers)
    assert current.json()["disabled_reason"] == "gone"
    enabled = await client.patch(
        f"/api/v1/webhooks/subscriptions/{gone['id']}",
        json={"active": True},
        headers={**lead.headers, "If-Match": current.headers["etag"]},
    )
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["active"] is True and enabled.json()["disabled_reason"] is None


async def test_a_redirect_is_a_failure_and_is_not_followed(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/moved"))
    receiver.script("/moved", Reply(302, {"Location": receiver.url("/target")}))
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]))
    await dispatcher.drain()
    (delivery,) = await deliveries(db)
    (attempt,) = await attempts(db, delivery.id)
    assert (attempt.outcome, attempt.status_code) == ("http_error", 302)
    assert attempt.error is not None and "redirects are not followed" in attempt.error
    assert delivery.status == "pending" and delivery.tries == 1
    assert receiver.at("/target") == []


async def test_a_slow_receiver_times_out_and_is_retried_with_the_same_webhook_id(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    settings: Settings,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/slow"))
    receiver.script("/slow", Reply(delay=2.0), Reply())
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]))
    impatient = Dispatcher.from_settings(
        settings.model_copy(update={"webhook_timeout_seconds": 0.3}), db
    )
    try:
        await impatient.drain()
        (delivery,) = await deliveries(db)
        (timed_out,) = await attempts(db, delivery.id)
        assert timed_out.outcome == "timeout" and timed_out.status_code is None
        assert delivery.status == "pending" and delivery.next_attempt_at is not None
        clock.set(delivery.next_attempt_at)
        assert await impatient.drain() == 1
    finally:
        await impatient.aclose()
    (delivery,) = await deliveries(db)
    assert delivery.status == "delivered" and delivery.attempt_count == 2
    first, second = receiver.at("/slow")
    assert first.msg_id == second.msg_id == f"msg_{delivery.id.hex}"
    assert second.timestamp > first.timestamp


async def test_an_expired_lease_is_reclaimed_and_the_stale_outcome_changes_nothing(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
    settings: Settings,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/lease"))
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]))
    crashed = Dispatcher.from_settings(settings, db)
    try:
        (claimed,) = await crashed.claim(10)  # ... and then it stalls
        assert await dispatcher.drain() == 0  # leased: nobody else takes it
        clock.advance(crashed.lease + SECOND)
        assert await dispatcher.drain() == 1  # the lease ran out: reclaimed and sent
        # The stalled dispatcher comes back with an outcome: logged, but it changes nothing.
        await crashed.record([Outcome(claimed, clock.at, "network_error", error="reset")])
    finally:
        await crashed.aclose()
    (delivery,) = await deliveries(db)
    assert delivery.status == "delivered" and delivery.attempt_count == 1
    assert [a.outcome for a in await attempts(db, delivery.id)] == ["delivered", "network_error"]
    assert len(receiver.at("/lease")) == 1


async def test_a_subscription_failing_for_five_days_is_disabled(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    admin = await make_actor("admin", "DOE")
    flaky = await subscribe(
        client, admin, receiver.url("/flaky"), event_types=["incident.escalated"]
    )
    await subscribe(
        client, admin, receiver.url("/watch"), event_types=["webhook.endpoint_disabled"]
    )
    found = await incident(client, admin)
    start = clock.at

    async def event_at(at_offset: timedelta, reply: Reply) -> None:
        receiver.script("/flaky", reply)
        clock.set(start + at_offset)
        await emit(db, escalated(found["id"]))
        await dispatcher.drain()

    await event_at(timedelta(0), Reply(500))
    assert (await subscription_row(db, flaky["id"])).failing_since == start
    await event_at(timedelta(days=3), Reply(200))  # a success clears it
    assert (await subscription_row(db, flaky["id"])).failing_since is None
    await event_at(timedelta(days=5, minutes=1), Reply(500))
    row = await subscription_row(db, flaky["id"])
    assert row.active and row.failing_since == start + timedelta(days=5, minutes=1)
    await event_at(timedelta(days=10, minutes=2), Reply(500))  # failing for 5 days now
    row = await subscription_row(db, flaky["id"])
    assert (row.active, row.disabled_reason) == (False, "failing")
    await dispatcher.drain()
    (told,) = receiver.at("/watch")
    assert told.json()["data"]["reason"] == "failing"
    assert told.json()["data"]["failing_since"] is not None
    statuses = [d.status for d in await deliveries(db, subscription_id=row.id)]
    assert "pending" not in statuses  # what was still queued for it failed with it


async def test_a_delivery_that_cannot_be_built_or_signed_fails_its_attempt_not_the_queue(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    good = await subscribe(client, lead, receiver.url("/good"))
    unsigned = await subscribe(client, lead, receiver.url("/unsigned"))
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]))
    async with db.unit_of_work() as session:
        # A payload written around the outbox's check, and a secret sealed under a key this
        # process does not have.
        await session.execute(update(OutboxEvent).values(payload={"reason": "unknown"}))
        await emit_many(session, [escalated(found["id"], 2)])
        await session.execute(
            update(Subscription)
            .where(Subscription.id == uuid.UUID(unsigned["id"]))
            .values(secret_ciphertext="retired-key:AAAA")
        )
    assert await dispatcher.drain() == 4
    outcomes = {}
    for delivery in await deliveries(db):
        (attempt,) = await attempts(db, delivery.id)
        outcomes[(str(delivery.subscription_id), delivery.id)] = attempt
    errors = sorted(
        (a.outcome, a.error or "") for a in outcomes.values() if a.outcome != "delivered"
    )
    assert [e[0] for e in errors] == ["error"] * 3
    assert sum("does not match its schema" in e[1] for e in errors) == 1
    assert sum("cannot sign" in e[1] and "retired-key" in e[1] for e in errors) == 2
    (sent,) = receiver.at("/good")  # the well-formed event to the well-keyed subscription
    assert sent.json()["data"]["level"] == 2
    assert good["id"] in {s for s, _ in outcomes}
