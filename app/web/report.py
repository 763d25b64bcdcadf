"""Report an incident: the API's IncidentCreate and service, errors beside each field."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from app.auth.roles import at_least
from app.deps import get_database
from app.errors import AppError, Forbidden
from app.incidents import service as incidents
from app.incidents.schemas import IncidentCreate
from app.incidents.vocabulary import CATEGORIES, SECTORS, SEVERITIES, TLP_MARKINGS
from app.minerals.models import Mineral
from app.web.forms import errors_of, local_time, optional, status_of
from app.web.security import WebPrincipal, WebUser
from app.web.templating import gettext_for, language_of, render

router = APIRouter()
COVER_COUNTRIES = ("US", "JP")
NUMBER_FIELDS = (
    "estimated_shortfall_tonnes_per_month",
    "supply_share_affected_pct",
    "price_change_pct",
    "expected_duration_days",
)


async def _page(
    request: Request,
    web: WebPrincipal,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        minerals = (
            await session.execute(
                select(Mineral.code, Mineral.name_en, Mineral.name_ja).order_by(Mineral.code)
            )
        ).all()
    return await render(
        request,
        "report.html",
        web,
        {
            "values": values,
            "errors": errors,
            "minerals": minerals,
            "categories": CATEGORIES,
            "sectors": SECTORS,
            "severities": SEVERITIES,
            "tlps": TLP_MARKINGS,
            "countries": COVER_COUNTRIES,
        },
        status_code=status_code,
    )


def _require_reporter(web: WebPrincipal) -> None:
    if not at_least(web.user.role, "responder"):
        raise Forbidden("Reporting incidents needs the responder role")


@router.get("/incidents/new")
async def report_form(request: Request, web: WebUser) -> Response:
    _require_reporter(web)
    return await _page(
        request,
        web,
        {"tlp": "AMBER", "status": "reported", "minerals": [], "affected_sectors": []},
        {},
    )


def _number(value: str | None) -> str | None:
    return optional(value)


@router.post("/incidents/new")
async def report(request: Request, web: WebUser) -> Response:
    _require_reporter(web)
    form = await request.form()
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    values: dict[str, Any] = {
        **text,
        "minerals": [v for v in form.getlist("minerals") if isinstance(v, str)],
        "affected_sectors": [v for v in form.getlist("affected_sectors") if isinstance(v, str)],
    }
    data: dict[str, Any] = {
        "title": text.get("title", ""),
        "summary": text.get("summary", ""),
        "minerals": values["minerals"],
        "category": text.get("category", ""),
        "tlp": text.get("tlp", "AMBER"),
        "status": text.get("status", "reported"),
        "affected_sectors": values["affected_sectors"],
    }
    if optional(text.get("severity")):
        data["severity"] = text["severity"]
    if optional(text.get("origin_country")):
        data["origin_country"] = text["origin_country"].strip().upper()
    for name in NUMBER_FIELDS:
        if _number(text.get(name)) is not None:
            data[name] = text[name].strip()
    cover = {
        c: text[f"days_of_cover_{c}"].strip()
        for c in COVER_COUNTRIES
        if optional(text.get(f"days_of_cover_{c}"))
    }
    if cover:
        data["days_of_cover"] = cover
    effective = local_time(text.get("effective_at"), web.user.timezone)
    if effective is not None:
        data["effective_at"] = effective
    try:
        async with get_database(request).unit_of_work() as session:
            created = await incidents.create(
                session, web.principal, IncidentCreate.model_validate(data)
            )
            key = created.incident.key
    except (AppError, ValidationError) as exc:
        _ = gettext_for(language_of(request, web))
        errors = {name: _(message) for name, message in errors_of(exc).items()}
        return await _page(request, web, values, errors, status_code=status_of(exc))
    return RedirectResponse(f"/incidents/{key}", status_code=303)
