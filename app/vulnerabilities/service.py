"""The ranked list of supply vulnerabilities, with the open incidents the reader may see."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import User
from app.countries import ministry_of
from app.incidents.models import Incident, IncidentMineral
from app.incidents.states import OPEN_STATUSES
from app.incidents.visibility import visible_to
from app.kit.sql import constants
from app.minerals.models import Mineral
from app.minerals.schemas import MineralOut
from app.priority.service import load_settings
from app.register.queries import current_profiles
from app.vulnerabilities.ranking import COVER_HALF_DAYS, Exposure, RankBy, rank
from app.vulnerabilities.schemas import (
    CountryExposureOut,
    ExposureComponentOut,
    IncidentBrief,
    VulnerabilityOut,
    VulnerabilityRanking,
)

INCIDENTS_PER_MINERAL = 10
FORMULA = (
    "exposure = 100 x (net import reliance % / 100) x (countries-of-concern share of "
    f"imports % / 100) x (criticality of the most critical sector) x {COVER_HALF_DAYS:g} / "
    f"({COVER_HALF_DAYS:g} + days of cover); joint = the higher of US and JP"
)


def _components(e: Exposure) -> list[ExposureComponentOut]:
    return [
        ExposureComponentOut(
            name="net_import_reliance", input=e.reliance_pct, factor=e.reliance_pct / 100
        ),
        ExposureComponentOut(
            name="concern_share",
            input=e.concern_share_pct,
            factor=round(e.concern_share_pct / 100, 6),
            basis={"suppliers_of_concern": list(e.concern_suppliers)},
        ),
        ExposureComponentOut(
            name="sector_criticality", input=list(e.sectors), factor=e.criticality
        ),
        ExposureComponentOut(
            name="cover",
            input=e.days_of_cover,
            factor=e.cover_factor,
            basis={"half_days": COVER_HALF_DAYS},
        ),
    ]


async def open_incidents_by_mineral(
    session: AsyncSession, user: User, minerals: Collection[str]
) -> tuple[dict[str, list[IncidentBrief]], dict[str, int]]:
    """For each mineral, the reader's visible open incidents (highest priority first, at
    most INCIDENTS_PER_MINERAL) and how many there are, in two queries."""
    if not minerals:
        return {}, {}
    on_mineral = (
        select(
            IncidentMineral.mineral_code,
            Incident.id,
            Incident.key,
            Incident.title,
            Incident.status,
            Incident.severity,
            Incident.tlp,
            Incident.priority_score,
        )
        .join(Incident, Incident.id == IncidentMineral.incident_id)
        .where(
            IncidentMineral.mineral_code.in_(sorted(minerals)),
            Incident.status.in_(constants(OPEN_STATUSES)),
            visible_to(user),
        )
    )
    visible = on_mineral.subquery()
    counts = {
        code: int(n)
        for code, n in await session.execute(
            select(visible.c.mineral_code, func.count()).group_by(visible.c.mineral_code)
        )
    }
    position = (
        func.row_number()
        .over(
            partition_by=IncidentMineral.mineral_code,
            order_by=(Incident.priority_score.desc(), Incident.number.desc()),
        )
        .label("position")
    )
    ranked = on_mineral.add_columns(position).subquery()
    top = defaultdict(list)
    rows = await session.execute(
        select(ranked)
        .where(ranked.c.position <= INCIDENTS_PER_MINERAL)
        .order_by(ranked.c.mineral_code, ranked.c.position)
    )
    for row in rows.mappings():
        top[row["mineral_code"]].append(
            IncidentBrief(
                id=row["id"],
                key=row["key"],
                title=row["title"],
                status=row["status"],
                severity=row["severity"],
                tlp=row["tlp"],
                priority_score=row["priority_score"],
            )
        )
    return dict(top), counts


async def ranking(
    session: AsyncSession, user: User, *, by: RankBy = "joint", limit: int | None = None
) -> VulnerabilityRanking:
    profiles = await current_profiles(session)
    weights, concern = await load_settings(session)
    ranked = rank(profiles, concern, weights.sectors, by)
    if limit is not None:
        ranked = ranked[:limit]
    catalogue = {m.code: m for m in (await session.scalars(select(Mineral))).all()}
    profiled = {mineral for mineral, _ in profiles}
    top, counts = await open_incidents_by_mineral(session, user, [r.mineral for r in ranked])
    return VulnerabilityRanking(
        by=by,
        computed_at=clock.now(),
        formula=FORMULA,
        items=[
            VulnerabilityOut(
                rank=r.rank,
                mineral=MineralOut.model_validate(catalogue[r.mineral]),
                exposure=r.value,
                joint_exposure=r.joint,
                driver=r.driver,
                countries=[
                    CountryExposureOut(
                        country=country,
                        ministry=ministry_of(country),
                        exposure=e.exposure,
                        rank=r.country_ranks[country],
                        profile_version=e.profile_version,
                        as_of=e.as_of,
                        illustrative=e.illustrative,
                        components=_components(e),
                    )
                    for country, e in r.countries.items()
                ],
                open_incidents=top.get(r.mineral, []),
                open_incident_count=counts.get(r.mineral, 0),
            )
            for r in ranked
        ],
        unassessed=sorted(set(catalogue) - profiled),
    )
