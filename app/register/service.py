"""The register's write paths and reads for the API: dependency profiles (versioned, kept
by the leads of the country's ministry) and the countries of concern.

Every write recomputes the priority of the open incidents it can move: a profile those on
its mineral, a list of countries of concern all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth import permissions
from app.auth.models import User
from app.auth.service import Principal
from app.countries import CO_LEAD_COUNTRIES, PROFILE_COUNTRIES, is_country, ministry_of
from app.deps import check_preconditions
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from app.kit.pagination import Key, Order, paginate
from app.minerals.models import Mineral
from app.priority.service import recompute_open
from app.register.models import ConcernList, ConcernListChange, DependencyProfile
from app.register.queries import current_profiles
from app.register.schemas import ProfileIn

# --- who may do what ------------------------------------------------------------------


def require_profile_keeper(user: User, country: str) -> None:
    if not permissions.may_keep_profiles(user, country):
        raise Forbidden(f"Only leads of {ministry_of(country)} may change the {country} profiles")


# --- reading --------------------------------------------------------------------------


async def get_mineral(session: AsyncSession, code: str) -> Mineral:
    mineral = await session.get(Mineral, code)
    if mineral is None:
        raise NotFound(f"No mineral {code!r} in the catalogue")
    return mineral


def profile_country(code: str, *, location: str = "path") -> str:
    """A country whose profiles are kept (``US`` or ``JP``), else 422 naming it."""
    if not is_country(code):
        raise InvalidInput(
            "country", f"{code!r} is not an ISO 3166-1 alpha-2 code", location=location
        )
    if code not in CO_LEAD_COUNTRIES:
        raise InvalidInput(
            "country",
            f"profiles are kept for the co-lead countries only: {', '.join(PROFILE_COUNTRIES)}",
            location=location,
        )
    return code


async def current_profile(
    session: AsyncSession, mineral: str, country: str
) -> DependencyProfile | None:
    return await session.scalar(
        select(DependencyProfile).where(
            DependencyProfile.mineral_code == mineral,
            DependencyProfile.country == country,
            DependencyProfile.is_current,
        )
    )


async def current_profiles_of(session: AsyncSession, mineral: str) -> list[DependencyProfile]:
    """The mineral's current profiles, in co-lead country order."""
    current = await current_profiles(session, [mineral])
    return [current[(mineral, c)] for c in PROFILE_COUNTRIES if (mineral, c) in current]


async def version_counts(session: AsyncSession, mineral: str) -> dict[str, int]:
    rows = await session.execute(
        select(DependencyProfile.country, func.count())
        .where(DependencyProfile.mineral_code == mineral)
        .group_by(DependencyProfile.country)
    )
    return {country: int(n) for country, n in rows}


VERSIONS_ORDER = Order("profile_versions", Key(DependencyProfile.version, "int", descending=True))


async def versions(
    session: AsyncSession, mineral: str, country: str, *, limit: int, cursor: str | None
) -> tuple[list[DependencyProfile], str | None]:
    """One page of the profile's versions, newest first."""
    query = select(DependencyProfile).where(
        DependencyProfile.mineral_code == mineral, DependencyProfile.country == country
    )
    return await paginate(session, query, VERSIONS_ORDER, limit=limit, cursor=cursor)


# --- writing profiles -----------------------------------------------------------------


@dataclass(frozen=True)
class NewProfile:
    mineral: str
    country: str
    data: ProfileIn


def _row(new: NewProfile, version: int, user: User, *, current: bool) -> DependencyProfile:
    data = new.data.model_dump(mode="json", exclude={"as_of"})
    return DependencyProfile(
        mineral_code=new.mineral,
        country=new.country,
        version=version,
        is_current=current,
        as_of=new.data.as_of,
        recorded_at=clock.now(),
        recorded_by_id=user.id,
        **data,
    )


async def _add_versions(
    session: AsyncSession, user: User, profiles: Sequence[NewProfile]
) -> list[DependencyProfile]:
    """Add each as the next version of its (mineral, country), in order; the last one of
    each becomes current. A concurrent writer of the same profile makes this fail as a
    whole (IntegrityError on the version or one-current-version index): nothing is
    half-written."""
    keys = {(p.mineral, p.country) for p in profiles}
    minerals = sorted({m for m, _ in keys})
    latest: dict[tuple[str, str], int] = {}
    for mineral, country, version in await session.execute(
        select(
            DependencyProfile.mineral_code,
            DependencyProfile.country,
            func.max(DependencyProfile.version),
        )
        .where(DependencyProfile.mineral_code.in_(minerals))
        .group_by(DependencyProfile.mineral_code, DependencyProfile.country)
    ):
        latest[(mineral, country)] = int(version)
    for mineral in minerals:
        await session.execute(
            update(DependencyProfile)
            .where(
                DependencyProfile.mineral_code == mineral,
                DependencyProfile.country.in_(sorted(c for m, c in keys if m == mineral)),
                DependencyProfile.is_current,
            )
            .values(is_current=False)
            .execution_options(synchronize_session="fetch")
        )
    last = {(p.mineral, p.country): i for i, p in enumerate(profiles)}
    rows = []
    for i, new in enumerate(profiles):
        key = (new.mineral, new.country)
        latest[key] = latest.get(key, 0) + 1
        rows.append(_row(new, latest[key], user, current=last[key] == i))
    session.add_all(rows)
    await session.flush()
    return rows


async def put_profile(
    session: AsyncSession,
    principal: Principal,
    mineral: str,
    country: str,
    data: ProfileIn,
    *,
    if_match: str | None,
    if_none_match: str | None,
) -> DependencyProfile:
    """Record a new version of the (mineral, country) profile; recompute the priority of
    the open incidents on that mineral."""
    user = principal.user
    country = profile_country(country)
    if await session.get(Mineral, mineral) is None:
        raise InvalidInput("mineral", f"unknown mineral {mineral!r}", location="path")
    require_profile_keeper(user, country)
    current = await current_profile(session, mineral, country)
    check_preconditions(current.version if current else None, if_match, if_none_match)
    try:
        async with session.begin_nested():
            (row,) = await _add_versions(session, user, [NewProfile(mineral, country, data)])
    except IntegrityError:
        raise PreconditionFailed(
            "The profile was changed by someone else at the same time; fetch it again"
        ) from None
    await recompute_open(session, [mineral])
    return row


async def import_profiles(
    session: AsyncSession, principal: Principal, profiles: Sequence[NewProfile]
) -> tuple[list[DependencyProfile], int]:
    """Record validated rows as new versions, all or nothing; recompute the open
    incidents on their minerals. The caller has checked the rows (app.register.imports)."""
    try:
        async with session.begin_nested():
            rows = await _add_versions(session, principal.user, profiles)
    except IntegrityError:
        raise Conflict(
            "Some of these profiles were changed at the same time; nothing was imported, try again"
        ) from None
    recomputed = await recompute_open(session, {p.mineral for p in profiles})
    return rows, recomputed


# --- countries of concern -------------------------------------------------------------


def co_lead_ministry(code: str) -> str:
    code = code.upper()
    if code not in CO_LEAD_COUNTRIES.values():
        raise NotFound(
            f"Lists of countries of concern are kept by {', '.join(CO_LEAD_COUNTRIES.values())}"
        )
    return code


async def put_concern_list(
    session: AsyncSession,
    principal: Principal,
    ministry: str,
    countries: list[str],
    if_match: str | None,
) -> tuple[ConcernList, int]:
    """Replace a ministry's list (its leads; If-Match the version read; version 0 while
    never set), record the change and recompute every open incident."""
    user = principal.user
    ministry = co_lead_ministry(ministry)
    if not permissions.may_keep_concern_list(user, ministry):
        raise Forbidden(f"Only leads of {ministry} may change its countries of concern")
    row = await session.get(ConcernList, ministry, with_for_update=True)
    before = list(row.countries) if row else []
    check_preconditions(row.version if row else 0, if_match)
    now = clock.now()
    if row is None:
        row = ConcernList(ministry_code=ministry, version=0)
        session.add(row)
    row.countries, row.version = countries, row.version + 1
    row.updated_at, row.updated_by_id = now, user.id
    session.add(
        ConcernListChange(
            ministry_code=ministry,
            version=row.version,
            at=now,
            changed_by_id=user.id,
            added=sorted(set(countries) - set(before)),
            removed=sorted(set(before) - set(countries)),
            countries=countries,
        )
    )
    await session.flush()
    return row, await recompute_open(session)


CHANGES_ORDER = Order("concern_changes", Key(ConcernListChange.version, "int", descending=True))


async def concern_list_changes(
    session: AsyncSession, ministry: str, *, limit: int, cursor: str | None
) -> tuple[list[ConcernListChange], str | None]:
    """One page of the changes to the ministry's list, newest first."""
    query = select(ConcernListChange).where(
        ConcernListChange.ministry_code == co_lead_ministry(ministry)
    )
    return await paginate(session, query, CHANGES_ORDER, limit=limit, cursor=cursor)
