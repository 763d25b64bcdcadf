"""Fan-out: the deliveries of a batch of outbox events, written in the transaction that
emitted them (one query for the active subscriptions, one insert for all deliveries)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.caches import ProcessCache
from app.db import table_of
from app.escalation.policies import FALLBACK_SEVERITY
from app.incidents.vocabulary import SEVERITIES
from app.kit import bulk
from app.models_base import new_id
from app.webhooks.models import Delivery, Subscription
from app.webhooks.vocabulary import WEBHOOK_EVENT_PREFIX


def matches(subscription: Any, event: dict[str, Any]) -> bool:
    """Whether an outbox event (a row as inserted) goes to an active subscription."""
    if event["subscription_id"] is not None:  # a test event goes to its one subscription
        return bool(subscription.id == event["subscription_id"])
    if subscription.event_types and event["type"] not in subscription.event_types:
        return False
    if event["type"].startswith(WEBHOOK_EVENT_PREFIX):
        return bool(subscription.ministry_id == event["ministry_id"])
    if subscription.min_severity is None:
        return True
    # An incident without a severity yet counts as the fallback (as for escalation).
    severity = event["severity"] or FALLBACK_SEVERITY
    return SEVERITIES.index(severity) <= SEVERITIES.index(subscription.min_severity)


async def _read_active(session: AsyncSession) -> tuple[Any, ...]:
    """(id, ministry_id, event_types, min_severity) of each active subscription."""
    query = select(
        Subscription.id,
        Subscription.ministry_id,
        Subscription.event_types,
        Subscription.min_severity,
    ).where(Subscription.active)
    return tuple((await session.execute(query)).all())


# The active subscriptions: nearly every write fans out, subscriptions change rarely.
_active = ProcessCache(("webhook_subscriptions",), _read_active)


async def queue_deliveries(session: AsyncSession, events: Sequence[dict[str, Any]]) -> int:
    """Write a pending delivery per (event, matching active subscription); returns how many."""
    subscriptions = await _active.get(session)
    if not subscriptions:
        return 0
    rows = [
        {
            "id": new_id(),
            "subscription_id": s.id,
            "outbox_event_id": e["id"],
            "event_type": e["type"],
            "status": "pending",
            "created_at": e["created_at"],
            "next_attempt_at": e["created_at"],
            "tries": 0,
            "attempt_count": 0,
        }
        for e in events
        for s in subscriptions
        if matches(s, e)
    ]
    await bulk.insert_rows(session, table_of(Delivery), rows)
    return len(rows)
