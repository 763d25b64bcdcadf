from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.deps import CurrentUser, Session
from app.minerals.models import Mineral
from app.minerals.schemas import MineralOut
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["minerals"])


@router.get("/minerals")
async def list_minerals(session: Session, _: CurrentUser) -> Page[MineralOut]:
    """The mineral catalogue, with English and Japanese names and HS codes where known."""
    rows = (await session.scalars(select(Mineral).order_by(Mineral.group, Mineral.code))).all()
    return Page(items=[MineralOut.model_validate(m) for m in rows], next_cursor=None)
