from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import CurrentUser, Session
from app.vulnerabilities import service
from app.vulnerabilities.ranking import RankBy
from app.vulnerabilities.schemas import VulnerabilityRanking

router = APIRouter(prefix="/api/v1", tags=["vulnerabilities"])


@router.get("/vulnerabilities")
async def list_vulnerabilities(
    session: Session,
    principal: CurrentUser,
    by: Annotated[RankBy, Query(description="Rank jointly, or by one country's exposure")] = (
        "joint"
    ),
    limit: Annotated[int | None, Query(ge=1, le=200)] = None,
) -> VulnerabilityRanking:
    """Minerals ranked by exposure (per country and jointly), with the components behind
    each rank and the open incidents on each that you may see."""
    return await service.ranking(session, principal.user, by=by, limit=limit)
