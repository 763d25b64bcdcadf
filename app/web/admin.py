"""Admin pages: users, webhook subscriptions (secret shown once, rotate, test, delivery log
with attempts, redeliver) and escalation policies, through the services the API uses (the
same permission rules: leads manage their ministry's subscriptions, admins its users)."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from app.auth import permissions
from app.auth import service as auth_service
from app.auth.models import User
from app.auth.permissions import require
from app.auth.roles import LANGUAGES, ROLES
from app.auth.schemas import UserCreate, UserUpdate
from app.deps import get_database
from app.errors import AppError, Conflict, InvalidInput, NotFound
from app.escalation import policies
from app.escalation.models import EscalationPolicy
from app.escalation.router import PolicyIn, Severity
from app.incidents.vocabulary import SEVERITIES, TLP_MARKINGS
from app.ministries.models import Ministry
from app.web.forms import errors_of, optional, status_of
from app.web.security import WebPrincipal, WebUser
from app.web.templating import NO_STORE, gettext_for, language_of, render
from app.webhooks import service as webhooks
from app.webhooks.router import get_box, get_egress
from app.webhooks.schemas import SubscriptionCreate

router = APIRouter(prefix="/admin")
PAGE = 100


def _require_webhook_manager(web: WebPrincipal) -> None:
    require(permissions.manages_webhooks(web.user), "Webhook subscriptions are managed by leads")


def _translated_errors(
    request: Request, web: WebPrincipal, exc: Exception, *, user_form: bool = False
) -> dict[str, str]:
    """Each field's error in the reader's language (``user_form``: a conflict there is the
    one a user form can meet, a taken email)."""
    _ = gettext_for(language_of(request, web))
    if user_form and isinstance(exc, Conflict):
        return {"email": _("a user with this email already exists")}
    return {name: _(message) for name, message in errors_of(exc).items()}


def _grantable_roles(web: WebPrincipal) -> list[str]:
    return [r for r in ROLES if permissions.may_grant_role(web.user, r)]


# --- users ------------------------------------------------------------------------------


async def _users_page(
    request: Request,
    web: WebPrincipal,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        rows, _ = await auth_service.list_users(session, web.user, limit=PAGE, cursor=None)
        managed = await auth_service.managed_ministry_ids(session, web.user)
        ministries = (
            await session.scalars(
                select(Ministry.code).where(Ministry.id.in_(managed)).order_by(Ministry.code)
            )
        ).all()
    return await render(
        request,
        "admin/users.html",
        web,
        {
            "users": rows,
            "ministries": ministries,
            "roles": _grantable_roles(web),
            "languages": LANGUAGES,
            "may_set_co_chair": permissions.may_set_co_chair(web.user),
            "errors": errors or {},
            "values": values or {"role": "viewer", "language": "en"},
        },
        status_code=status_code,
    )


@router.get("/users")
async def users(request: Request, web: WebUser) -> Response:
    return await _users_page(request, web)


@router.post("/users")
async def create_user(
    request: Request,
    web: WebUser,
    email: Annotated[str, Form(max_length=320)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    ministry: Annotated[str, Form(max_length=16)] = "",
    role: Annotated[str, Form(max_length=16)] = "viewer",
    language: Annotated[str, Form(max_length=8)] = "en",
    timezone: Annotated[str | None, Form(max_length=64)] = None,
    co_chair: Annotated[str | None, Form(max_length=8)] = None,
    password: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """The API's ``POST /users``: the same schema and service, so the same scope (a
    ministry the admin manages, a role no higher than theirs)."""
    require(permissions.is_admin(web.user), "Managing users needs the admin role")
    form: dict[str, Any] = {
        "email": email.strip(),
        "display_name": display_name.strip(),
        "ministry": ministry,
        "role": role,
        "language": language,
        "timezone": optional(timezone),
        "password": password or None,
    }
    if permissions.may_set_co_chair(web.user):
        form["co_chair"] = co_chair is not None
    try:
        data = UserCreate.model_validate(form)
        async with get_database(request).unit_of_work() as session:
            created = await auth_service.create_user(session, data, by=web.user)
            user_id = created.id
    except (AppError, ValidationError) as exc:
        shown = {k: v for k, v in form.items() if k != "password"}  # never echoed back
        return await _users_page(
            request,
            web,
            errors=_translated_errors(request, web, exc, user_form=True),
            values=shown,
            status_code=status_of(exc),
        )
    return RedirectResponse(f"/admin/users/{user_id}?saved=1", status_code=303)


async def _managed_user(request: Request, web: WebPrincipal, user_id: uuid.UUID) -> User:
    """The user, if the caller manages them: 404 if they may not see them, 403 if they see
    but do not manage them (as ``PATCH /users/{id}`` answers)."""
    require(permissions.is_admin(web.user), "Managing users needs the admin role")
    async with get_database(request).unit_of_work(readonly=True) as session:
        user = await auth_service.visible_user(session, web.user, user_id)
        require(
            permissions.manages_user(web.user, user),
            f"You may not manage users of {user.ministry.code}",
        )
    return user


async def _user_page(
    request: Request,
    web: WebPrincipal,
    user: User,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    current = {
        "display_name": user.display_name,
        "role": user.role,
        "language": user.language,
        "timezone": user.timezone,
        "co_chair": user.co_chair,
        "active": user.active,
    }
    return await render(
        request,
        "admin/user.html",
        web,
        {
            "subject": user,
            "roles": _grantable_roles(web),
            "languages": LANGUAGES,
            "may_set_co_chair": permissions.may_set_co_chair(web.user),
            "errors": errors or {},
            "values": {**current, **(values or {})},
            "saved": saved,
        },
        status_code=status_code,
    )


@router.get("/users/{user_id}")
async def user_form(request: Request, web: WebUser, user_id: uuid.UUID) -> Response:
    user = await _managed_user(request, web, user_id)
    return await _user_page(request, web, user, saved="saved" in request.query_params)


@router.post("/users/{user_id}")
async def update_user(
    request: Request,
    web: WebUser,
    user_id: uuid.UUID,
    display_name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    language: Annotated[str, Form(max_length=8)] = "",
    timezone: Annotated[str, Form(max_length=64)] = "",
    active: Annotated[str | None, Form(max_length=8)] = None,
    co_chair: Annotated[str | None, Form(max_length=8)] = None,
    password: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """The API's ``PATCH /users/{id}``: name, role, language, zone, active, the co-chair
    flag (DOE and METI admins) and a new password; email and ministry are not changed."""
    user = await _managed_user(request, web, user_id)
    form: dict[str, Any] = {
        "display_name": display_name.strip(),
        "role": role,
        "language": language,
        "timezone": timezone.strip(),
        "active": active is not None,
    }
    if permissions.may_set_co_chair(web.user):
        form["co_chair"] = co_chair is not None
    if password:
        form["password"] = password
    try:
        data = UserUpdate.model_validate(form)
        async with get_database(request).unit_of_work() as session:
            await auth_service.update_user(session, user_id, data, by=web.user)
    except (AppError, ValidationError) as exc:
        shown = {k: v for k, v in form.items() if k != "password"}
        return await _user_page(
            request,
            web,
            user,
            errors=_translated_errors(request, web, exc, user_form=True),
            values=shown,
            status_code=status_of(exc),
        )
    return RedirectResponse(f"/admin/users/{user_id}?saved=1", status_code=303)


# --- escalation policies ----------------------------------------------------------------


@router.get("/policies")
async def escalation_policies(request: Request, web: WebUser) -> Response:
    """Everyone may read the policies (as in the API); DOE and METI admins edit them."""
    async with get_database(request).unit_of_work(readonly=True) as session:
        rows, _ = await policies.list_rows(session, limit=PAGE, cursor=None)
    return await render(
        request,
        "admin/policies.html",
        web,
        {
            "policies": rows,
            "may_edit": permissions.manages_escalation_policies(web.user),
            "saved": request.query_params.get("saved") in SEVERITIES,
        },
    )


def _require_policy_editor(web: WebPrincipal) -> None:
    """Checked before the form is read, so a refused editor sees 403, not field errors."""
    require(
        permissions.manages_escalation_policies(web.user),
        "Only admins of DOE and METI change escalation policies",
    )


def hours_as_duration(text: str) -> int | float | None:
    """A duration typed in hours (``1.5``) as the seconds the API's schema reads; text that
    is no number is None, and a fraction of a second is kept for the rules to refuse."""
    try:
        hours = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not hours.is_finite() or abs(hours) > 10**7:
        return None
    seconds = hours * 3600
    return int(seconds) if seconds == seconds.to_integral_value() else float(seconds)


async def _policy_page(
    request: Request,
    web: WebPrincipal,
    severity: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    _require_policy_editor(web)
    if values is None:
        async with get_database(request).unit_of_work(readonly=True) as session:
            loaded = await session.get(EscalationPolicy, severity)
            if loaded is None:
                raise NotFound(f"No policy for {severity}")
            stored = policies.Policy.of(loaded).as_dict()
        values = {f: _hours_text(stored[f]) for f in policies.FIELDS}
    return await render(
        request,
        "admin/policy.html",
        web,
        {"severity": severity, "fields": policies.FIELDS, "errors": errors or {}, "values": values},
        status_code=status_code,
    )


def _hours_text(seconds: int) -> str:
    return format((Decimal(seconds) / 3600).normalize(), "f")


@router.get("/policies/{severity}")
async def policy_form(request: Request, web: WebUser, severity: Severity) -> Response:
    return await _policy_page(request, web, severity)


@router.post("/policies/{severity}")
async def update_policy(request: Request, web: WebUser, severity: Severity) -> Response:
    """The API's ``PUT /escalation-policies/{severity}``, with durations in hours: the same
    schema and the same rules (``policies.violations``), each error beside its field."""
    _require_policy_editor(web)
    form = await request.form()
    values = {f: str(form.get(f, ""))[:64] for f in policies.FIELDS}
    body: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, text in values.items():
        if not text.strip():
            errors[name] = "required"
        elif (seconds := hours_as_duration(text)) is None:
            errors[name] = "must be a number of hours"
        else:
            body[name] = seconds
    try:
        if errors:
            raise InvalidInput.all_of(sorted(errors.items()))
        data = PolicyIn.model_validate(body)
        async with get_database(request).unit_of_work() as session:
            await policies.update(
                session, web.principal, severity, policies.Policy(severity, **data.model_dump())
            )
    except (AppError, ValidationError) as exc:
        return await _policy_page(
            request,
            web,
            severity,
            errors=_translated_errors(request, web, exc),
            values=values,
            status_code=status_of(exc),
        )
    return RedirectResponse(f"/admin/policies?saved={severity}", status_code=303)


async def _webhooks_page(
    request: Request,
    web: WebPrincipal,
    *,
    secret: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    _require_webhook_manager(web)
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
    _require_webhook_manager(web)
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
        return await _webhooks_page(
            request,
            web,
            errors=_translated_errors(request, web, exc),
            values=form,
            status_code=status_of(exc),
        )
    return await _webhooks_page(request, web, secret=secret)


@router.post("/webhooks/{subscription_id}/rotate")
async def rotate(request: Request, web: WebUser, subscription_id: uuid.UUID) -> Response:
    _require_webhook_manager(web)
    async with get_database(request).unit_of_work() as session:
        secret, _ = await webhooks.rotate_secret(
            session, web.principal, subscription_id, get_box(request)
        )
    return await _webhooks_page(request, web, secret=secret)


@router.post("/webhooks/{subscription_id}/test")
async def test(request: Request, web: WebUser, subscription_id: uuid.UUID) -> Response:
    _require_webhook_manager(web)
    async with get_database(request).unit_of_work() as session:
        await webhooks.send_test(session, web.principal, subscription_id)
    return RedirectResponse(f"/admin/webhooks/{subscription_id}/deliveries", status_code=303)


@router.get("/webhooks/{subscription_id}/deliveries")
async def deliveries(request: Request, web: WebUser, subscription_id: uuid.UUID) -> Response:
    _require_webhook_manager(web)
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
    _require_webhook_manager(web)
    async with get_database(request).unit_of_work(readonly=True) as session:
        row, _, attempts = await webhooks.get_delivery(session, web.user, delivery_id)
    return await render(
        request, "admin/delivery.html", web, {"delivery": row, "attempts": attempts}
    )


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, web: WebUser, delivery_id: uuid.UUID) -> Response:
    _require_webhook_manager(web)
    async with get_database(request).unit_of_work() as session:
        await webhooks.redeliver(session, web.principal, delivery_id)
    return RedirectResponse(f"/admin/deliveries/{delivery_id}", status_code=303)
