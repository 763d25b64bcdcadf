from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import WithJsonSchema

from app import clock
from app.deps import CurrentUser, Session
from app.kit.types import Timestamp, timestamp_schema
from app.sitrep import service
from app.sitrep.render import render_markdown
from app.sitrep.schemas import Language, Sitrep

router = APIRouter(prefix="/api/v1", tags=["sitrep"])

MARKDOWN = "text/markdown"


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
    at: Annotated[
        Timestamp | None,
        WithJsonSchema(timestamp_schema("Report time (default now)")),
        Query(),
    ] = None,
    lang: Annotated[Language | None, Query(description="Default: your language")] = None,
    format: Annotated[Literal["json", "markdown"] | None, Query()] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Sitrep | Response:
    """The situation report for you: open incidents by severity and priority, the last 24
    hours' status changes and escalations, overdue actions by ministry, the top supply
    vulnerabilities — only what you may see."""
    user = principal.user
    language: Language = lang or ("ja" if user.language == "ja" else "en")
    report = await service.build(session, user, at or clock.now(), language, co_lead_view=False)
    wants_markdown = format == "markdown" or (
        format is None and accept is not None and MARKDOWN in accept.lower()
    )
    if wants_markdown:
        return Response(render_markdown(report), media_type=f"{MARKDOWN}; charset=utf-8")
    return report
