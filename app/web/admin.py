"""Admin pages: users, webhook subscriptions (secret shown once, rotate, test, delivery log
with attempts, redeliver) and escalation policies, through the services the API uses (the
same permission rules: leads manage their ministry's subscriptions, admins its users)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.auth import service as auth_service
from app.auth.permissions import require
from app.auth.roles import at_least
from app.deps import get_database
from app.errors import AppError
from app.escalation import policies
from app.incidents.vocabulary import SEVERITIES, TLP_MARKINGS
from app.web.forms import errors_of, optional, status_of
from app.web.security import WebPrincipal, WebUser
from app.web.templating import gettext_for, language_of, render
from app.webhooks import service as webhooks
from app.webhooks.router import get_box, get_egress
from app.webhooks.schemas import SubscriptionCreate

router = APIRouter(prefix="/admin")
PAGE = 100
NO_STORE = {"Cache-Control": "no-store"}  # a page showing a secret is never cached


def _lead(web: WebPrincipal) -> None:
    require(at_least(web.user.role, "lead"), "Webhook subscriptions are managed by leads")


@router.get("/users")
async def users(request: Request, web: WebUser) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        rows, _ = await auth_service.list_users(session, web.user, limit=PAGE, cursor=None)
    return await render(request, "admin/users.html", web, {"users": rows})


@router.get("/policies")
async def escalation_policies(request: Request, web: WebUser) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        rows, _ = await policies.list_rows(session, limit=PAGE, cursor=None)
    return await render(request, "admin/policies.html", web, {"policies": rows})


async def _webhooks_page(
    request: Request,
    web: WebPrincipal,
    *,
    secret: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    _lead(web)
    async with get_database(request).unit_of_work(readonly=True) as session:
        rows = await webhooks.list_subscriptions(session, web.user)
    return await render(
        request,
        "admin/webhooks.html",
        web,
        {
            "subscriptions": rows,
            "secret": secret,
            "errors": errors or {},
            "values": values or {},
            "tlps": TLP_MARKINGS,
            "severities": SEVERITIES,
        },
        status_code=status_code,
        headers=NO_STORE if secret else None,
    )


@router.get("/webhooks")
async def subscriptions(request: Request, web: WebUser) -> Response:
    return await _webhooks_page(request, web)


@router.post("/webhooks")
async def create_subscription(
    request: Request,
    web: WebUser,
    url: Annotated[str, Form(max_length=2048)] = "",
    description: Annotated[str, Form(max_length=1000)] = "",
    max_tlp: Annotated[str, Form(max_length=16)] = "GREEN",
    min_severity: Annotated[str | None, Form(max_length=8)] = None,
) -> Response:
    _lead(web)
    form = {
        "url": url,
        "description": description,
        "max_tlp": max_tlp,
        "min_severity": optional(min_severity),
    }
    try:
        data = SubscriptionCreate.model_validate(form)
        async with get_database(request).unit_of_work() as session:
            _, _, secret = await webhooks.create_subscription(
                session, web.principal, data, get_box(request), get_egress(request)
            )
    except (AppError, ValidationError) as exc:
        _ = gettext_for(language_of(request, web))
        errors = {name: _(message) for name, message in errors_of(exc).items()}
        return await _webhooks_page(
            request, web, errors=errors, values=form, status_code=status_of(exc)
        )
    return await _webhooks_page(request, web, secret=secret)


@router.post("/webhooks/{subscription_id}/rotate")
async def rotate(request: Request, web: WebUser, subscription_id: uuid.UUID) -> Response:
    _lead(web)
    async with get_database(request).unit_of_work() as session:
        secret, _ = await webhooks.rotate_secret(
            session, web.principal, subscription_id, get_box(request)
        )
    return await _webhooks_page(request, web, secret=secret)


@router.post("/webhooks/{subscription_id}/test")
async def test(request: Request, web: WebUser, subscription_id: uuid.UUID) -> Response:
    _lead(web)
    async with get_database(request).unit_of_work() as session:
        await webhooks.send_test(session, web.principal, subscription_id)
    return RedirectResponse(f"/admin/webhooks/{subscription_id}/deliveries", status_code=303)


@router.get("/webhooks/{subscription_id}/deliveries")
async def deliveries(request: Request, web: WebUser, subscription_id: uuid.UUID) -> Response:
    _lead(web)
    async with get_database(request).unit_of_work(readonly=True) as session:
        subscription, ministry = await webhooks.get_subscription(session, web.user, subscription_id)
        rows, _ = await webhooks.list_deliveries(
            session,
            web.user,
            webhooks.DeliveryFilters(subscription_id=subscription_id),
            limit=PAGE,
            cursor=None,
        )
    return await render(
        request,
        "admin/deliveries.html",
        web,
        {"subscription": subscription, "ministry": ministry, "deliveries": [d for d, _ in rows]},
    )


@router.get("/deliveries/{delivery_id}")
async def delivery(request: Request, web: WebUser, delivery_id: uuid.UUID) -> Response:
    _lead(web)
    async with get_database(request).unit_of_work(readonly=True) as session:
        row, _, attempts = await webhooks.get_delivery(session, web.user, delivery_id)
    return await render(
        request, "admin/delivery.html", web, {"delivery": row, "attempts": attempts}
    )


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, web: WebUser, delivery_id: uuid.UUID) -> Response:
    _lead(web)
    async with get_database(request).unit_of_work() as session:
        await webhooks.redeliver(session, web.principal, delivery_id)
    return RedirectResponse(f"/admin/deliveries/{delivery_id}", status_code=303)
