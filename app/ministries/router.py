from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.deps import AdminUser, CurrentUser, Session
from app.idempotency import Idempotent
from app.kit.pagination import Cursor, Limit
from app.ministries import service
from app.ministries.schemas import CODE_PATTERN, MinistryCreate, MinistryOut, MinistryUpdate
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["ministries"])

MinistryCode = Annotated[str, Path(pattern=CODE_PATTERN, description="Ministry code, e.g. JOGMEC")]


@router.get("/ministries")
async def list_ministries(
    session: Session, _: CurrentUser, limit: Limit = 50, cursor: Cursor = None
) -> Page[MinistryOut]:
    rows, next_cursor = await service.list_ministries(session, limit=limit, cursor=cursor)
    return Page(items=[MinistryOut.model_validate(m) for m in rows], next_cursor=next_cursor)


@router.get("/ministries/{code}")
async def get_ministry(code: MinistryCode, session: Session, _: CurrentUser) -> MinistryOut:
    return MinistryOut.model_validate(await service.get(session, code))


@router.post("/ministries", status_code=201)
async def create_ministry(
    data: MinistryCreate,
    session: Session,
    principal: AdminUser,
    response: Response,
    idempotency: Idempotent,
) -> MinistryOut:
    """Add a partner organisation (admins of DOE and METI)."""

    async def produce() -> MinistryOut:
        ministry = await service.create_partner(session, data, by=principal.user)
        return MinistryOut.model_validate(ministry)

    return await idempotency.respond(  # type: ignore[return-value]
        session,
        response,
        scope="ministries",
        produce=produce,
        recheck=lambda body: service.get(session, body["code"]),  # every user sees ministries
    )


@router.patch("/ministries/{code}")
async def update_ministry(
    code: MinistryCode, data: MinistryUpdate, session: Session, principal: AdminUser
) -> MinistryOut:
    """Change a partner organisation's names, country or time zone (admins of DOE and METI)."""
    ministry = await service.update_partner(session, code, data, by=principal.user)
    return MinistryOut.model_validate(ministry)
