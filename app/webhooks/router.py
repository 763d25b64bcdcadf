"""The webhooks API: subscriptions (leads and admins, SPEC §1) and the delivery log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.service import Principal
from app.deps import IfMatchRequired, Session, etag, require_role, required_version
from app.errors import Conflict
from app.idempotency import Idempotent
from app.kit.pagination import Cursor, Limit
from app.kit.types import Timestamp
from app.schemas import Page
from app.webhooks import service
from app.webhooks.models import Attempt, Delivery, Subscription, webhook_id
from app.webhooks.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    RecoverRequest,
    RecoverResult,
    SecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionOut,
    SubscriptionUpdate,
)
from app.webhooks.secrets import SecretBox
from app.webhooks.vocabulary import DeliveryStatus, EventType

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

Manager = Annotated[Principal, Depends(require_role("lead"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such subscription, or not one you may manage"}
}
INACTIVE: dict[int | str, dict[str, Any]] = {409: {"description": "The subscription is not active"}}


def get_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.webhook_box
    return box


def get_egress(request: Request) -> service.Egress:
    egress: service.Egress = request.app.state.webhook_egress
    return egress


Box = Annotated[SecretBox, Depends(get_box)]
Egress = Annotated[service.Egress, Depends(get_egress)]


def subscription_out(subscription: Subscription, ministry: str) -> SubscriptionOut:
    return SubscriptionOut.model_validate(
        {
            **{
                name: getattr(subscription, name)
                for name in SubscriptionOut.model_fields
                if name != "ministry"
            },
            "ministry": ministry,
        }
    )


def delivery_out(delivery: Delivery, incident_id: uuid.UUID | None) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        webhook_id=webhook_id(delivery.id),
        subscription_id=delivery.subscription_id,
        event_id=delivery.outbox_event_id,
        event_type=delivery.event_type,
        incident_id=incident_id,
        status=delivery.status,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at,
        attempt_count=delivery.attempt_count,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        finished_at=delivery.finished_at,
    )


def delivery_detail(
    delivery: Delivery, incident_id: uuid.UUID | None, attempts: list[Attempt]
) -> DeliveryDetail:
    return DeliveryDetail(
        **delivery_out(delivery, incident_id).model_dump(),
        attempts=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
    )


@router.get("/subscriptions")
async def list_webhook_subscriptions(session: Session, principal: Manager) -> Page[SubscriptionOut]:
    """The subscriptions you may manage: your ministry's (and, for admins of DOE or METI,
    the partner organisations')."""
    rows = await service.list_subscriptions(session, principal.user)
    return Page(items=[subscription_out(s, code) for s, code in rows], next_cursor=None)


@router.post("/subscriptions", status_code=201)
async def create_webhook_subscription(
    data: SubscriptionCreate,
    session: Session,
    principal: Manager,
    box: Box,
    egress: Egress,
    response: Response,
    idempotency: Idempotent,
) -> SubscriptionCreated:
    """Subscribe a URL to events. The signing secret is in this response only (and in
    its replay under the same `Idempotency-Key`, to the same caller, for 24 hours)."""

    async def produce() -> SubscriptionCreated:
        subscription, code, secret = await service.create_subscription(
            session, principal, data, box, egress
        )
        out = subscription_out(subscription, code)
        return SubscriptionCreated(**out.model_dump(), secret=secret)

    async def still_current(body: dict[str, Any]) -> None:
        """A replay shows the secret again only while the caller manages the subscription
        and the secret is still the one signing (not since rotated)."""
        subscription, _ = await service.get_subscription(
            session, principal.user, uuid.UUID(body["id"])
        )
        if box.open(subscription.secret_ciphertext, subscription.id) != body.get("secret"):
            raise Conflict(
                "The secret of the first response has since been rotated; it is not shown again"
            )

    return await idempotency.respond(  # type: ignore[return-value]
        session,
        response,
        scope="webhook-subscriptions",
        produce=produce,
        recheck=still_current,
        sealed=("secret",),
    )


@router.get("/subscriptions/{subscription_id}", responses=NOT_FOUND)
async def get_webhook_subscription(
    subscription_id: uuid.UUID, session: Session, principal: Manager, response: Response
) -> SubscriptionOut:
    subscription, code = await service.get_subscription(session, principal.user, subscription_id)
    response.headers["ETag"] = etag(subscription.version)
    return subscription_out(subscription, code)


@router.patch("/subscriptions/{subscription_id}", responses=NOT_FOUND)
async def update_webhook_subscription(
    subscription_id: uuid.UUID,
    data: SubscriptionUpdate,
    session: Session,
    principal: Manager,
    egress: Egress,
    response: Response,
    if_match: IfMatchRequired,
) -> SubscriptionOut:
    subscription, code = await service.get_subscription(session, principal.user, subscription_id)
    expected = required_version(if_match, subscription.version)
    await service.update_subscription(session, subscription, expected, data, egress)
    response.headers["ETag"] = etag(subscription.version)
    return subscription_out(subscription, code)


@router.delete("/subscriptions/{subscription_id}", status_code=204, responses=NOT_FOUND)
async def delete_webhook_subscription(
    subscription_id: uuid.UUID, session: Session, principal: Manager
) -> Response:
    """Delete a subscription with its delivery log."""
    await service.delete_subscription(session, principal, subscription_id)
    return Response(status_code=204)


@router.post("/subscriptions/{subscription_id}/rotate-secret", responses=NOT_FOUND)
async def rotate_webhook_secret(
    subscription_id: uuid.UUID, session: Session, principal: Manager, box: Box
) -> SecretRotated:
    """A new signing secret. For 24 hours every delivery is signed with both the new and the
    previous secret (two `v1,` entries), so receivers can switch without losing events."""
    secret, until = await service.rotate_secret(session, principal, subscription_id, box)
    return SecretRotated(secret=secret, previous_secret_expires_at=until)


@router.post(
    "/subscriptions/{subscription_id}/test",
    status_code=202,
    responses={**NOT_FOUND, **INACTIVE},
)
async def test_webhook_subscription(
    subscription_id: uuid.UUID, session: Session, principal: Manager
) -> DeliveryDetail:
    """Send a `webhook.test` event to this subscription; follow it in the delivery log."""
    delivery_id = await service.send_test(session, principal, subscription_id)
    return delivery_detail(*await service.get_delivery(session, principal.user, delivery_id))


@router.post("/subscriptions/{subscription_id}/recover", responses={**NOT_FOUND, **INACTIVE})
async def recover_webhook_deliveries(
    subscription_id: uuid.UUID, data: RecoverRequest, session: Session, principal: Manager
) -> RecoverResult:
    """Re-queue the subscription's failed deliveries created since a time (each keeps its
    `webhook-id`, and gets a fresh retry schedule)."""
    count = await service.recover(session, principal, subscription_id, data.since)
    return RecoverResult(requeued=count)


@router.get("/deliveries")
async def list_webhook_deliveries(
    session: Session,
    principal: Manager,
    subscription_id: uuid.UUID | None = None,
    event_type: EventType | None = None,
    status: DeliveryStatus | None = None,
    since: Annotated[Timestamp | None, Query(description="Created at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="Created before")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    """The delivery log of the subscriptions you may manage, newest first."""
    filters = service.DeliveryFilters(subscription_id, event_type, status, since, until)
    rows, next_cursor = await service.list_deliveries(
        session, principal.user, filters, limit=limit, cursor=cursor
    )
    return Page(items=[delivery_out(d, i) for d, i in rows], next_cursor=next_cursor)


@router.get("/deliveries/{delivery_id}", responses={404: {"description": "No such delivery"}})
async def get_webhook_delivery(
    delivery_id: uuid.UUID, session: Session, principal: Manager
) -> DeliveryDetail:
    """A delivery with all its attempts (time, status code, latency, error, response)."""
    return delivery_detail(*await service.get_delivery(session, principal.user, delivery_id))


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    responses={
        404: {"description": "No such delivery"},
        409: {"description": "Already queued, or the subscription is not active"},
    },
)
async def redeliver_webhook(
    delivery_id: uuid.UUID, session: Session, principal: Manager
) -> DeliveryDetail:
    """Send a delivery again, with the same `webhook-id` and a fresh retry schedule."""
    return delivery_detail(*await service.redeliver(session, principal, delivery_id))
