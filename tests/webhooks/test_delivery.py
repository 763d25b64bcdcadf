"""Delivery end to end (SPEC §7): outbox events written in a transaction fan out to the
matching subscriptions and reach a real receiver on loopback, signed in the Standard Webhooks
form that the reference library verifies; nothing is sent for a change that rolled back;
payloads are redacted by TLP."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from app.db import Database
from app.outbox.models import OutboxEvent
from app.outbox.service import NewOutboxEvent, emit_many
from app.webhooks.dispatcher import Dispatcher
from app.webhooks.models import Delivery
from app.webhooks.payloads import ENVELOPES
from tests.conftest import MakeActor, QueryCounter
from tests.escalation.helpers import Clock
from tests.webhooks.helpers import (
    add_partner,
    attempts,
    deliveries,
    emit,
    escalated,
    incident,
    subscribe,
)
from tests.webhooks.receiver import Receiver


async def test_a_committed_event_reaches_the_receiver_signed_as_standard_webhooks(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url("/doe"))
    receiver.trust("/doe", sub["secret"])
    found = await incident(client, lead, title="Gallium export ban", severity="SEV2")
    (event_id,) = await emit(db, escalated(found["id"], level=2))

    assert await dispatcher.drain() == 1

    (request,) = receiver.at("/doe")
    assert request.verified_by == ["current"]  # the reference library accepts it
    (delivery,) = await deliveries(db)
    assert request.msg_id == f"msg_{delivery.id.hex}"
    assert request.timestamp == int(clock.at.timestamp())
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "incident.escalated"
    assert body["data"]["incident"] == {
        "id": found["id"],
        "key": found["key"],
        "title": "Gallium export ban",
        "status": "reported",
        "severity": "SEV2",
        "tlp": "GREEN",
    }
    assert body["data"]["reason"] == "triage_overdue" and body["data"]["level"] == 2
    ENVELOPES["incident.escalated"].model_validate(body)  # the published schema holds
    assert delivery.status == "delivered" and delivery.outbox_event_id == event_id
    assert delivery.finished_at == clock.at and delivery.next_attempt_at is None
    (attempt,) = await attempts(db, delivery.id)
    assert (attempt.outcome, attempt.status_code, attempt.response_excerpt) == (
        "delivered",
        200,
        "ok",
    )
    assert attempt.latency_ms is not None and attempt.latency_ms >= 0


async def test_a_rolled_back_change_sends_nothing_and_a_committed_one_always_does(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    await subscribe(client, lead, receiver.url("/doe"))
    found = await incident(client, lead)

    async def failing_change() -> None:
        async with db.unit_of_work() as session:
            await emit_many(session, [escalated(found["id"])])
            raise RuntimeError("the change failed after emitting")

    with pytest.raises(RuntimeError):
        await failing_change()
    async with db.unit_of_work(readonly=True) as session:
        escalations = select(func.count()).where(OutboxEvent.type == "incident.escalated")
        assert await session.scalar(escalations) == 0
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert await dispatcher.drain() == 0

    await emit(db, *(escalated(found["id"], level) for level in (1, 2)))
    assert await dispatcher.drain() == 2
    assert len(receiver.at("/doe")) == 2
    assert [d.status for d in await deliveries(db)] == ["delivered", "delivered"]
    assert await dispatcher.drain() == 0  # nothing is sent twice


async def test_after_a_rotation_both_secrets_sign_for_24_hours(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url("/doe"))
    rotated = await client.post(
        f"/api/v1/webhooks/subscriptions/{sub['id']}/rotate-secret", headers=lead.headers
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["secret"] != sub["secret"]
    receiver.trust("/doe", sub["secret"], "old")
    receiver.trust("/doe", new["secret"], "new")
    found = await incident(client, lead)

    await emit(db, escalated(found["id"]))
    await dispatcher.drain()
    (during,) = receiver.at("/doe")
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert sorted(during.verified_by) == ["new", "old"]

    clock.advance(timedelta(hours=24, seconds=1))
    await emit(db, escalated(found["id"], level=2))
    await dispatcher.drain()
    after = receiver.at("/doe")[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verified_by == ["new"]


async def test_fan_out_follows_event_types_severity_activity_and_ministry(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
):
    doe, meti = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    every = await subscribe(client, doe, receiver.url("/every"))
    actions_only = await subscribe(
        client, doe, receiver.url("/actions"), event_types=["action.escalated"]
    )
    severe = await subscribe(client, meti, receiver.url("/severe"), min_severity="SEV1")
    paused = await subscribe(client, doe, receiver.url("/paused"), active=False)
    sev1 = await incident(client, doe, severity="SEV1")
    sev2 = await incident(client, doe, severity="SEV2")
    unrated = await incident(client, doe)  # counts as SEV3
    action_id = str(uuid.uuid4())
    action = NewOutboxEvent(
        "action.escalated",
        uuid.UUID(sev2["id"]),
        {
            "action_id": action_id,
            "level": 1,
            "due_at": clock.at.isoformat(),
            "owning_ministry": "DOE",
        },
    )
    disabled = NewOutboxEvent(
        "webhook.endpoint_disabled",
        None,
        {
            "subscription_id": str(uuid.uuid4()),
            "url": "https://gone.example.test/",
            "reason": "gone",
            "disabled_at": clock.at.isoformat(),
        },
        ministry_id=doe.user.ministry_id,
    )
    ids = await emit(
        db, escalated(sev1["id"]), escalated(sev2["id"]), escalated(unrated["id"]), action, disabled
    )
    routed = {(str(d.subscription_id), d.outbox_event_id) for d in await deliveries(db)}
    e_sev1, e_sev2, e_unrated, e_action, e_disabled = ids
    assert routed == {
        (every["id"], e_sev1),
        (every["id"], e_sev2),
        (every["id"], e_unrated),
        (every["id"], e_action),
        (every["id"], e_disabled),  # webhook.* events: their ministry only (not METI)
        (actions_only["id"], e_action),
        (severe["id"], e_sev1),
    }
    assert paused["active"] is False


async def test_fan_out_costs_the_same_statements_for_one_event_or_five_hundred(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    count_queries,
):
    lead = await make_actor("lead", "DOE")
    for n in range(3):
        await subscribe(client, lead, receiver.url(f"/s{n}"))
    incidents = [await incident(client, lead) for _ in range(5)]
    counts = []
    for size in (1, 500):
        counter: QueryCounter = count_queries()
        await emit(db, *(escalated(incidents[i % 5]["id"], i) for i in range(size)))
        counts.append(counter.count)
    assert counts[0] == counts[1]
    assert len(await deliveries(db)) == 3 * 501


@pytest.mark.parametrize(
    ("tlp", "doe_green", "doe_red", "meti_strict", "partner_amber"),
    [
        ("CLEAR", True, True, True, True),
        ("GREEN", True, True, True, True),
        # AMBER: co-lead ministries; a partner organisation never sees it in full.
        ("AMBER", False, True, True, False),
        # AMBER+STRICT: the reporter's ministry (DOE) only.
        ("AMBER+STRICT", False, True, False, False),
        # RED: named people only, never an organisation's systems.
        ("RED", False, False, False, False),
    ],
)
async def test_payloads_are_redacted_above_max_tlp_and_what_the_ministry_may_see(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
    tlp: str,
    doe_green: bool,
    doe_red: bool,
    meti_strict: bool,
    partner_amber: bool,
):
    await add_partner(db)
    doe = await make_actor("lead", "DOE")
    partner_admin = await make_actor("admin", "JOGMEC")
    await subscribe(client, doe, receiver.url("/doe-green"))
    await subscribe(client, doe, receiver.url("/doe-red"), max_tlp="RED")
    meti = await make_actor("lead", "METI")
    await subscribe(client, meti, receiver.url("/meti-strict"), max_tlp="AMBER+STRICT")
    await subscribe(client, partner_admin, receiver.url("/partner-amber"), max_tlp="AMBER")
    found = await incident(client, doe, tlp=tlp, severity="SEV1", title="Dysprosium licensing")
    await emit(db, escalated(found["id"]))
    assert await dispatcher.drain() == 4

    for path, full in (
        ("/doe-green", doe_green),
        ("/doe-red", doe_red),
        ("/meti-strict", meti_strict),
        ("/partner-amber", partner_amber),
    ):
        (request,) = receiver.at(path)
        data = request.json()["data"]
        if full:
            assert data["incident"]["title"] == "Dysprosium licensing", path
            assert data["reason"] == "triage_overdue"
        else:
            assert data == {
                "redacted": True,
                "incident": {
                    "id": found["id"],
                    "key": found["key"],
                    "status": "reported",
                    "severity": "SEV1",
                },
            }, path
