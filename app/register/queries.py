"""Reading the register: current profiles and the countries of concern (no writes, so
the priority score and the ranking can read it without depending on its write paths)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.countries import CO_LEAD_COUNTRIES
from app.register.models import ConcernList, DependencyProfile

CurrentProfiles = dict[tuple[str, str], DependencyProfile]


async def current_profiles(
    session: AsyncSession, minerals: Collection[str] | None = None
) -> CurrentProfiles:
    """The current profile of each (mineral, country), for these minerals (None: all)."""
    query = select(DependencyProfile).where(DependencyProfile.is_current)
    if minerals is not None:
        if not minerals:
            return {}
        query = query.where(DependencyProfile.mineral_code.in_(sorted(set(minerals))))
    rows = (await session.scalars(query)).all()
    return {(p.mineral_code, p.country): p for p in rows}


async def concern_lists(session: AsyncSession) -> dict[str, ConcernList | None]:
    """Each co-lead ministry's list row (None while it has never been set)."""
    rows = (
        await session.scalars(
            select(ConcernList).where(ConcernList.ministry_code.in_(CO_LEAD_COUNTRIES.values()))
        )
    ).all()
    by_code = {row.ministry_code: row for row in rows}
    return {code: by_code.get(code) for code in CO_LEAD_COUNTRIES.values()}


async def concern_by_country(session: AsyncSession) -> dict[str, frozenset[str]]:
    """Co-lead country -> the countries of concern its ministry lists."""
    lists = await concern_lists(session)
    return {
        country: frozenset(row.countries) if (row := lists[ministry]) is not None else frozenset()
        for country, ministry in CO_LEAD_COUNTRIES.items()
    }
