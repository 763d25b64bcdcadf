from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.ministries.models import Ministry


async def list_ministries(session: AsyncSession) -> Sequence[Ministry]:
    return (await session.scalars(select(Ministry).order_by(Ministry.code))).all()


async def get_by_code(session: AsyncSession, code: str, *, field: str = "ministry") -> Ministry:
    ministry = await session.scalar(select(Ministry).where(Ministry.code == code.upper()))
    if ministry is None:
        raise InvalidInput(field, f"unknown ministry {code!r}")
    return ministry
