from __future__ import annotations

from fastapi import APIRouter

from app.deps import CurrentUser, Session
from app.ministries import service
from app.ministries.schemas import MinistryOut
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["ministries"])


@router.get("/ministries")
async def list_ministries(session: Session, _: CurrentUser) -> Page[MinistryOut]:
    rows = await service.list_ministries(session)
    return Page(items=[MinistryOut.model_validate(m) for m in rows], next_cursor=None)
