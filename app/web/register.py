"""The vulnerability ranking (``/vulnerabilities``) and the situation report (``/sitrep``),
from the same services as ``GET /api/v1/vulnerabilities`` and ``GET /api/v1/sitrep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app import clock
from app.deps import get_database
from app.sitrep import service as sitrep
from app.sitrep.render import render_markdown
from app.sitrep.schemas import Language
from app.vulnerabilities import service as vulnerabilities
from app.vulnerabilities.ranking import RankBy
from app.web.security import WebUser
from app.web.templating import language_of, render

router = APIRouter()


@router.get("/vulnerabilities")
async def vulnerabilities_page(
    request: Request, web: WebUser, by: Annotated[RankBy, Query()] = "joint"
) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        ranking = await vulnerabilities.ranking(session, web.user, by=by, limit=None)
    return await render(request, "vulnerabilities.html", web, {"ranking": ranking, "by": by})


@router.get("/sitrep")
async def sitrep_page(request: Request, web: WebUser) -> Response:
    language: Language = "ja" if language_of(request, web) == "ja" else "en"
    async with get_database(request).unit_of_work(readonly=True) as session:
        report = await sitrep.build(session, web.user, clock.now(), language, co_lead_view=False)
    # The report's own Markdown, in the reader's language, rendered like any user text.
    return await render(request, "sitrep.html", web, {"markdown": render_markdown(report)})
