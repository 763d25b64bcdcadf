"""Subscriptions and the delivery log: the rules the API (and later the web client) share.

Services flush; the request's unit of work commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock, signals
from app.auth import permissions
from app.auth.models import User
from app.auth.service import Principal
from app.db import table_of
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.kit.pagination import Key, Order, paginate_rows
from app.kit.sql import constants
from app.ministries.models import Ministry
from app.ministries.service import get_by_code
from app.models_base import apply_changes, check_version, new_id, requested_changes
from app.notifications.models import Notification
from app.outbox.models import OutboxEvent
from app.outbox.service import NewOutboxEvent, emit_many
from app.webhooks.egress import EgressPolicy, EgressRefused, Resolver, check_destination
from app.webhooks.models import Attempt, Delivery, Subscription
from app.webhooks.schemas import SubscriptionCreate, SubscriptionUpdate
from app.webhooks.secrets import SecretBox, new_secret
from app.webhooks.vocabulary import ROTATION_OVERLAP

TEST_MESSAGE = "A test event from the RRG coordination service"


@dataclass(frozen=True)
class Egress:
    """What a URL is checked against when a subscription is created or changed."""

    policy: EgressPolicy
    resolve: Resolver


async def check_url(egress: Egress, url: str) -> None:
    try:
        await check_destination(egress.policy, url, egress.resolve)
    except EgressRefused as exc:
        raise InvalidInput("url", str(exc)) from None


# --- subscriptions ----------------------------------------------------------------------


def _subscriptions(user: User) -> Select[Subscription, str]:
    return (
        select(Subscription, Ministry.code)
        .join(Ministry, Ministry.id == Subscription.ministry_id)
        .where(permissions.webhooks_managed_by(user, Subscription.ministry_id))
    )


async def list_subscriptions(
    session: AsyncSession, user: User
) -> Sequence[tuple[Subscription, str]]:
    rows = await session.execute(
        _subscriptions(user).order_by(Ministry.code, Subscription.created_at, Subscription.id)
    )
    return [(sub, code) for sub, code in rows]


async def get_subscription(
    session: AsyncSession, user: User, subscription_id: uuid.UUID
) -> tuple[Subscription, str]:
    """The subscription if the user may manage it; 404 otherwise."""
    row = (
        await session.execute(_subscriptions(user).where(Subscription.id == subscription_id))
    ).first()
    if row is None:
        raise NotFound("No such webhook subscription")
    return row[0], row[1]


async def create_subscription(
    session: AsyncSession,
    principal: Principal,
    data: SubscriptionCreate,
    box: SecretBox,
    egress: Egress,
) -> tuple[Subscription, str, str]:
    """A new subscription, its ministry's code and its secret (returned this once)."""
    user = principal.user
    await check_url(egress, data.url)  # resolves the host: before the transaction starts
    ministry = user.ministry if data.ministry is None else await get_by_code(session, data.ministry)
    if not permissions.manages_webhooks_of(user, ministry):
        raise Forbidden(f"You may not manage the webhook subscriptions of {ministry.code}")
    now = clock.now()
    secret = new_secret()
    subscription = Subscription(
        id=new_id(),
        ministry_id=ministry.id,
        url=data.url,
        event_types=list(data.event_types),
        min_severity=data.min_severity,
        max_tlp=data.max_tlp,
        description=data.description,
        active=data.active,
        created_by_id=user.id,
        created_at=now,
        updated_at=now,
    )
    subscription.secret_ciphertext = box.seal(secret, subscription.id)
    session.add(subscription)
    await session.flush()
    return subscription, ministry.code, secret


async def update_subscription(
    session: AsyncSession,
    subscription: Subscription,
    expected_version: int,
    data: SubscriptionUpdate,
    egress: Egress,
) -> Subscription:
    """Change a subscription the caller may manage (see ``get_subscription``)."""
    changes = requested_changes(data)
    if changes.get("url") is not None:
        await check_url(egress, changes["url"])
    check_version(subscription, expected_version)
    was_active = subscription.active
    _, after = apply_changes(subscription, changes)
    now = clock.now()
    if after:
        subscription.updated_at = now
    if "active" in after and subscription.active:
        # Re-enabled: whatever disabled it is forgiven.
        subscription.disabled_reason = subscription.disabled_at = None
        subscription.failing_since = None
    await session.flush()
    if was_active and not subscription.active:
        await fail_pending(session, [subscription.id], now, "the subscription was deactivated")
    return subscription


async def delete_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> None:
    subscription, _ = await get_subscription(session, principal.user, subscription_id)
    await session.delete(subscription)  # its deliveries and attempts go with it
    await session.flush()


async def rotate_secret(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, box: SecretBox
) -> tuple[str, datetime]:
    """A new secret; deliveries are signed with the old one too for ROTATION_OVERLAP."""
    subscription, _ = await get_subscription(session, principal.user, subscription_id)
    now = clock.now()
    secret = new_secret()
    subscription.previous_secret_ciphertext = subscription.secret_ciphertext
    subscription.previous_secret_expires_at = now + ROTATION_OVERLAP
    subscription.secret_ciphertext = box.seal(secret, subscription.id)
    subscription.updated_at = now
    await session.flush()
    return secret, subscription.previous_secret_expires_at


def _require_active(subscription: Subscription) -> None:
    if not subscription.active:
        raise Conflict("The subscription is not active; re-enable it first (PATCH active=true)")


async def send_test(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> uuid.UUID:
    """Queue a webhook.test event to this one subscription; returns its delivery's id."""
    subscription, _ = await get_subscription(session, principal.user, subscription_id)
    _require_active(subscription)
    (event_id,) = await emit_many(
        session,
        [
            NewOutboxEvent(
                "webhook.test",
                None,
                {"subscription_id": str(subscription.id), "message": TEST_MESSAGE},
                ministry_id=subscription.ministry_id,
                subscription_id=subscription.id,
            )
        ],
    )
    delivery_id = await session.scalar(
        select(Delivery.id).where(Delivery.outbox_event_id == event_id)
    )
    assert delivery_id is not None
    return delivery_id


def _requeue(now: datetime) -> dict[str, Any]:
    """A fresh retry schedule, due now (the same delivery id, so the same webhook-id)."""
    return {
        "status": "pending",
        "tries": 0,
        "next_attempt_at": now,
        "lease_token": None,
        "finished_at": None,
    }


async def recover(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, since: datetime
) -> int:
    """Re-queue the subscription's failed deliveries created since ``since``."""
    subscription, _ = await get_subscription(session, principal.user, subscription_id)
    _require_active(subscription)
    result = await session.execute(
        update(table_of(Delivery))
        .where(
            Delivery.subscription_id == subscription.id,
            Delivery.status == "failed",
            Delivery.created_at >= since,
        )
        .values(_requeue(clock.now()))
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        signals.announce(session, deliveries=count)
    return count


# --- the delivery log ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryFilters:
    subscription_id: uuid.UUID | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _deliveries(user: User) -> Select[Delivery, uuid.UUID | None]:
    return (
        select(Delivery, OutboxEvent.incident_id)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .join(OutboxEvent, OutboxEvent.id == Delivery.outbox_event_id)
        .where(permissions.webhooks_managed_by(user, Subscription.ministry_id))
    )


# Newest first.
DELIVERY_ORDER = Order(
    "deliveries",
    Key(Delivery.created_at, "datetime", descending=True),
    Key(Delivery.id, "uuid", descending=True),
)


async def list_deliveries(
    session: AsyncSession,
    user: User,
    filters: DeliveryFilters,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[tuple[Delivery, uuid.UUID | None]], str | None]:
    where: list[ColumnElement[bool]] = []
    if filters.subscription_id is not None:
        where.append(Delivery.subscription_id == filters.subscription_id)
    if filters.event_type is not None:
        where.append(Delivery.event_type == filters.event_type)
    if filters.status is not None:
        where.append(Delivery.status == filters.status)
    if filters.since is not None:
        where.append(Delivery.created_at >= filters.since)
    if filters.until is not None:
        where.append(Delivery.created_at < filters.until)
    rows, next_cursor = await paginate_rows(
        session, _deliveries(user).where(*where), DELIVERY_ORDER, limit=limit, cursor=cursor
    )
    return [(delivery, incident_id) for delivery, incident_id in rows], next_cursor


async def get_delivery(
    session: AsyncSession, user: User, delivery_id: uuid.UUID
) -> tuple[Delivery, uuid.UUID | None, list[Attempt]]:
    row = (await session.execute(_deliveries(user).where(Delivery.id == delivery_id))).first()
    if row is None:
        raise NotFound("No such webhook delivery")
    attempts = (
        await session.scalars(
            select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.number)
        )
    ).all()
    return row[0], row[1], list(attempts)


async def redeliver(
    session: AsyncSession, principal: Principal, delivery_id: uuid.UUID
) -> tuple[Delivery, uuid.UUID | None, list[Attempt]]:
    """Send a delivery again (same webhook-id), with a fresh retry schedule."""
    delivery, _, _ = await get_delivery(session, principal.user, delivery_id)
    if delivery.status == "pending":
        raise Conflict("The delivery is already queued")
    subscription = await session.get(Subscription, delivery.subscription_id)
    assert subscription is not None
    _require_active(subscription)
    for name, value in _requeue(clock.now()).items():
        setattr(delivery, name, value)
    await session.flush()
    signals.announce(session, deliveries=1)
    return await get_delivery(session, principal.user, delivery_id)


# --- used by the dispatcher ---------------------------------------------------------------


async def fail_pending(
    session: AsyncSession, subscription_ids: Sequence[uuid.UUID], now: datetime, why: str
) -> None:
    """Fail the pending deliveries of subscriptions that stopped (`recover` re-queues them);
    an attempt in flight records its outcome but no longer changes the delivery."""
    await session.execute(
        update(table_of(Delivery))
        .where(Delivery.subscription_id.in_(subscription_ids), Delivery.status == "pending")
        .values(
            status="failed", next_attempt_at=None, lease_token=None, finished_at=now, last_error=why
        )
    )


async def disable(
    session: AsyncSession, subscription_id: uuid.UUID, reason: str, now: datetime
) -> bool:
    """Disable an active subscription (410, or failing for days): its pending deliveries
    fail, `webhook.endpoint_disabled` goes to its ministry's other subscriptions and an in-app
    notification to the ministry's admins. False if it was not active."""
    table = table_of(Subscription)
    row = (
        await session.execute(
            update(table)
            .where(table.c.id == subscription_id, table.c.active)
            .values(
                active=False,
                disabled_reason=reason,
                disabled_at=now,
                updated_at=now,
                version=table.c.version + 1,
            )
            .returning(table.c.ministry_id, table.c.url, table.c.failing_since)
        )
    ).first()
    if row is None:
        return False
    why = "gone (410)" if reason == "gone" else "failing for 5 days"
    await fail_pending(session, [subscription_id], now, f"the subscription was disabled: {why}")
    payload = {
        "subscription_id": str(subscription_id),
        "url": row.url,
        "reason": reason,
        "disabled_at": now.isoformat(),
        "failing_since": row.failing_since.isoformat() if row.failing_since else None,
    }
    await emit_many(
        session,
        [NewOutboxEvent("webhook.endpoint_disabled", None, payload, ministry_id=row.ministry_id)],
        at=now,
    )
    admins = (
        await session.scalars(
            select(User.id).where(
                User.ministry_id == row.ministry_id, User.role == "admin", User.active
            )
        )
    ).all()
    if admins:
        await session.execute(
            insert(table_of(Notification)),
            [
                {
                    "id": new_id(),
                    "user_id": admin_id,
                    "incident_id": None,
                    "type": "webhook.endpoint_disabled",
                    "title": f"Webhook endpoint disabled ({why}): {row.url}",
                    "data": payload,
                    "created_at": now,
                }
                for admin_id in admins
            ],
        )
    return True


async def purge_history(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` finished deliveries created before ``cutoff`` (their attempts
    go with them), then outbox events before it that no delivery refers to."""
    finished = (
        select(Delivery.id)
        .where(
            Delivery.status.in_(constants(("delivered", "failed"))), Delivery.created_at < cutoff
        )
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(delete(table_of(Delivery)).where(Delivery.id.in_(finished)))
    count = int(getattr(result, "rowcount", 0) or 0)
    if count < limit:
        orphans = (
            select(OutboxEvent.id)
            .where(
                OutboxEvent.created_at < cutoff,
                ~select(Delivery.id).where(Delivery.outbox_event_id == OutboxEvent.id).exists(),
            )
            .limit(limit)
            .scalar_subquery()
        )
        await session.execute(delete(table_of(OutboxEvent)).where(OutboxEvent.id.in_(orphans)))
    return count
