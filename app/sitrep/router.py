from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import BeforeValidator, WithJsonSchema

from app import clock
from app.deps import CurrentUser, Session
from app.errors import InvalidInput
from app.kit.types import TIMESTAMP_PATTERN, Timestamp, timestamp_schema
from app.sitrep import service
from app.sitrep.render import render_markdown
from app.sitrep.schemas import Language, Sitrep

router = APIRouter(prefix="/api/v1", tags=["sitrep"])

MARKDOWN = "text/markdown"
# The report time is written in the years 2000-2099 (the contract's pattern says so); in UTC
# it may lie a day either side, so an offset never pushes a written time out of range.
AT_RANGE = (datetime(1999, 12, 31, tzinfo=UTC), datetime(2100, 1, 2, tzinfo=UTC))
AT_SCHEMA = {
    **timestamp_schema(),
    "pattern": "^20" + TIMESTAMP_PATTERN.removeprefix("^(19|20)"),
    "description": "Report time (default now): an RFC 3339 date-time with a UTC offset "
    "(`Z` or `±hh:mm`), in the years 2000 to 2099.",
}


def _written_2000_to_2099(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith("20"):
        raise ValueError("must be in the years 2000 to 2099")
    return value


ReportTime = Annotated[Timestamp, BeforeValidator(_written_2000_to_2099), WithJsonSchema(AT_SCHEMA)]


def report_time(at: datetime | None) -> datetime:
    if at is None:
        return clock.now()
    low, high = AT_RANGE
    if not low <= at < high:
        raise InvalidInput(
            "at", f"must lie between {low.date()} and {high.date()}", location="query"
        )
    return at.astimezone(UTC)


@router.get(
    "/sitrep",
    response_model=Sitrep,
    responses={
        200: {
            "description": "The report as JSON, or as Markdown (`format=markdown` or "
            "`Accept: text/markdown`)",
            "content": {MARKDOWN: {"schema": {"type": "string"}}},
        }
    },
)
async def get_sitrep(
    session: Session,
    principal: CurrentUser,
    at: Annotated[ReportTime | None, WithJsonSchema(AT_SCHEMA), Query()] = None,
    lang: Annotated[Language | None, Query(description="Default: your language")] = None,
    format: Annotated[Literal["json", "markdown"] | None, Query()] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Sitrep | Response:
    """The situation report for you: open incidents by severity and priority, the last 24
    hours' status changes and escalations, overdue actions by ministry, the top supply
    vulnerabilities — only what you may see."""
    user = principal.user
    language: Language = lang or ("ja" if user.language == "ja" else "en")
    report = await service.build(session, user, report_time(at), language, co_lead_view=False)
    wants_markdown = format == "markdown" or (
        format is None and accept is not None and MARKDOWN in accept.lower()
    )
    if wants_markdown:
        return Response(render_markdown(report), media_type=f"{MARKDOWN}; charset=utf-8")
    return report
