"""Helpers for webhook tests: subscriptions through the API, events through the outbox,
and readers of what the dispatcher wrote."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from app.db import Database
from app.outbox.service import NewOutboxEvent, emit_many
from app.webhooks.models import Attempt, Delivery, Subscription
from tests.conftest import Actor
from tests.incidents.helpers import create

Json = dict[str, Any]


# What these tests exercise the pipeline with: the sweep's events and the service's own (the
# incident a test creates would otherwise add an incident.reported delivery of its own).
PIPELINE_EVENTS = [
    "incident.escalated",
    "action.escalated",
    "webhook.test",
    "webhook.endpoint_disabled",
]


async def subscribe(client: httpx.AsyncClient, actor: Actor, url: str, **fields: Any) -> Json:
    """A subscription to ``PIPELINE_EVENTS`` unless ``event_types`` says otherwise."""
    fields.setdefault("event_types", PIPELINE_EVENTS)
    response = await client.post(
        "/api/v1/webhooks/subscriptions", json={"url": url, **fields}, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


async def incident(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> Json:
    return await create(client, actor, **fields)


def escalated(incident_id: str, level: int = 1) -> NewOutboxEvent:
    """An incident.escalated event, as the sweep emits it."""
    return NewOutboxEvent(
        "incident.escalated",
        uuid.UUID(incident_id),
        {"reason": "triage_overdue", "level": level, "reported_at": "2030-01-07T09:00:00+00:00"},
    )


async def emit(db: Database, *events: NewOutboxEvent) -> list[uuid.UUID]:
    async with db.unit_of_work() as session:
        return await emit_many(session, events)


async def deliveries(db: Database, **where: Any) -> list[Delivery]:
    async with db.unit_of_work(readonly=True) as session:
        query = select(Delivery).order_by(Delivery.created_at, Delivery.id)
        for name, value in where.items():
            query = query.where(getattr(Delivery, name) == value)
        return list((await session.scalars(query)).all())


async def attempts(db: Database, delivery_id: uuid.UUID) -> list[Attempt]:
    async with db.unit_of_work(readonly=True) as session:
        return list(
            (
                await session.scalars(
                    select(Attempt)
                    .where(Attempt.delivery_id == delivery_id)
                    .order_by(Attempt.number)
                )
            ).all()
        )


async def subscription_row(db: Database, subscription_id: str) -> Subscription:
    async with db.unit_of_work(readonly=True) as session:
        row = await session.get(Subscription, uuid.UUID(subscription_id))
        assert row is not None
        return row


async def add_partner(db: Database, code: str = "JOGMEC") -> None:
    """A partner organisation (the fixtures' clear_data removes it again)."""
    from app.ministries.models import Ministry

    async with db.unit_of_work() as session:
        session.add(
            Ministry(
                code=code,
                name="Japan Organization for Metals and Energy Security",
                name_ja="エネルギー・金属鉱物資源機構",
                country="JP",
                timezone="Asia/Tokyo",
                kind="partner",
            )
        )
