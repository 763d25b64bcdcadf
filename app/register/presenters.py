"""Register rows -> API shapes (shared by the API, the ranking and the sitrep)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.countries import country_of_ministry, ministry_of
from app.incidents.presenters import user_refs
from app.incidents.schemas import Source
from app.register.formulas import concern_dependence_pct, concern_share_pct
from app.register.models import ConcernList, ConcernListChange, DependencyProfile
from app.register.queries import concern_by_country
from app.register.schemas import (
    ConcernListChangeOut,
    ConcernListOut,
    ProfileOut,
    SupplierOut,
)


async def present_profiles(
    session: AsyncSession,
    rows: Sequence[DependencyProfile],
    concern: Mapping[str, frozenset[str]] | None = None,
) -> list[ProfileOut]:
    """Profiles with their derived concern figures (from the ministries' current lists),
    in a fixed number of queries."""
    if not rows:
        return []
    concern = concern if concern is not None else await concern_by_country(session)
    refs = await user_refs(session, (r.recorded_by_id for r in rows))
    out = []
    for row in rows:
        listed = concern.get(row.country, frozenset())
        share = concern_share_pct(row.suppliers, listed)
        out.append(
            ProfileOut(
                mineral=row.mineral_code,
                country=row.country,
                ministry=ministry_of(row.country),
                version=row.version,
                current=row.is_current,
                as_of=row.as_of,
                net_import_reliance_pct=row.net_import_reliance_pct,
                consumption_tonnes_per_year=row.consumption_tonnes_per_year,
                suppliers=[
                    SupplierOut(
                        country=s["country"],
                        share_pct=float(s["share_pct"]),
                        of_concern=s["country"] in listed,
                    )
                    for s in row.suppliers
                ],
                concern_share_pct=round(share, 6),
                concern_dependence_pct=round(
                    concern_dependence_pct(row.net_import_reliance_pct, share), 6
                ),
                domestic_capacity_tonnes_per_year=row.domestic_capacity_tonnes_per_year,
                allied_capacity_tonnes_per_year=row.allied_capacity_tonnes_per_year,
                stockpile_tonnes=row.stockpile_tonnes,
                days_of_cover=row.days_of_cover,
                sectors=row.sectors,
                sources=[Source.model_validate(s) for s in row.sources],
                illustrative=row.illustrative,
                note=row.note,
                recorded_at=row.recorded_at,
                recorded_by=refs[row.recorded_by_id],
            )
        )
    return out


async def present_concern_lists(
    session: AsyncSession, rows: Mapping[str, ConcernList | None]
) -> list[ConcernListOut]:
    refs = await user_refs(session, (r.updated_by_id for r in rows.values() if r is not None))
    return [
        ConcernListOut(
            ministry=ministry,
            country=country_of_ministry(ministry),
            countries=list(row.countries) if row else [],
            version=row.version if row else 0,
            updated_at=row.updated_at if row else None,
            updated_by=refs[row.updated_by_id] if row else None,
        )
        for ministry, row in rows.items()
    ]


async def present_concern_changes(
    session: AsyncSession, rows: Sequence[ConcernListChange]
) -> list[ConcernListChangeOut]:
    refs = await user_refs(session, (r.changed_by_id for r in rows))
    return [
        ConcernListChangeOut(
            ministry=r.ministry_code,
            version=r.version,
            at=r.at,
            changed_by=refs[r.changed_by_id],
            added=r.added,
            removed=r.removed,
            countries=r.countries,
        )
        for r in rows
    ]
