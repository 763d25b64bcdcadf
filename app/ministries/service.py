"""Ministries: the two co-leads (seeded) and the partner organisations co-lead admins add."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import permissions
from app.auth.models import User
from app.errors import Conflict, InvalidInput, NotFound
from app.kit.pagination import Key, Order, paginate
from app.ministries.models import Ministry
from app.ministries.schemas import MinistryCreate, MinistryUpdate
from app.models_base import apply_changes, requested_changes

MINISTRIES_ORDER = Order("ministries", Key(Ministry.code, "str"))


async def list_ministries(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Ministry], str | None]:
    return await paginate(session, select(Ministry), MINISTRIES_ORDER, limit=limit, cursor=cursor)


async def get_by_code(session: AsyncSession, code: str, *, field: str = "ministry") -> Ministry:
    ministry = await session.scalar(select(Ministry).where(Ministry.code == code.upper()))
    if ministry is None:
        raise InvalidInput(field, f"unknown ministry {code!r}")
    return ministry


async def get(session: AsyncSession, code: str) -> Ministry:
    ministry = await session.scalar(select(Ministry).where(Ministry.code == code.upper()))
    if ministry is None:
        raise NotFound("No such ministry")
    return ministry


def _may_manage_partners(by: User) -> None:
    permissions.require(
        permissions.manages_partners(by),
        "Only admins of DOE and METI manage partner organisations",
    )


async def create_partner(
    session: AsyncSession, data: MinistryCreate, *, by: User | None
) -> Ministry:
    """Add a partner organisation. ``by`` is the admin asking; None is the operator at the
    command line."""
    if by is not None:
        _may_manage_partners(by)
    code = data.code.upper()
    if await session.scalar(select(Ministry.id).where(Ministry.code == code)) is not None:
        raise Conflict(f"A ministry with code {code} already exists")
    ministry = Ministry(
        code=code,
        name=data.name,
        name_ja=data.name_ja or data.name,
        country=data.country,
        timezone=data.timezone,
        kind="partner",
    )
    session.add(ministry)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same code
        raise Conflict(f"A ministry with code {code} already exists") from exc
    return ministry


async def update_partner(
    session: AsyncSession, code: str, data: MinistryUpdate, *, by: User
) -> Ministry:
    _may_manage_partners(by)
    ministry = await get(session, code)
    permissions.require(
        not ministry.is_co_lead, f"{ministry.code} is a co-lead ministry; only partners change here"
    )
    apply_changes(ministry, requested_changes(data))
    await session.flush()
    return ministry
