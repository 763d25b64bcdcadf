from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.deps import CurrentUser, Session
from app.kit.pagination import MAX_LIMIT, Cursor, Key, Limit, Order, paginate
from app.minerals.models import Mineral
from app.minerals.schemas import MineralOut
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["minerals"])

MINERALS_ORDER = Order("minerals", Key(Mineral.group, "str"), Key(Mineral.code, "str"))


@router.get("/minerals")
async def list_minerals(
    session: Session, _: CurrentUser, limit: Limit = MAX_LIMIT, cursor: Cursor = None
) -> Page[MineralOut]:
    """The mineral catalogue, with English and Japanese names and HS codes where known
    (the whole seeded catalogue fits the default page)."""
    rows, next_cursor = await paginate(
        session, select(Mineral), MINERALS_ORDER, limit=limit, cursor=cursor
    )
    return Page(items=[MineralOut.model_validate(m) for m in rows], next_cursor=next_cursor)
