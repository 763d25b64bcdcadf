"""The demo loads the register: marked illustrative, and every demo incident scored."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db import Database
from app.demo import load_demo
from app.demo_profiles import NOTE, PROFILES
from app.incidents.models import Incident, IncidentMineral
from app.register.models import ConcernList, DependencyProfile


async def test_demo_profiles_are_illustrative_and_cover_the_demo_minerals(db: Database):
    async with db.unit_of_work() as session:
        assert await load_demo(session) is not None
    async with db.unit_of_work(readonly=True) as session:
        profiles = (await session.scalars(select(DependencyProfile))).all()
        assert len(profiles) == len(PROFILES)
        assert all(p.illustrative and p.note == NOTE and p.is_current for p in profiles)
        on_incidents = set((await session.scalars(select(IncidentMineral.mineral_code))).all())
        profiled = {p.mineral_code for p in profiles}
        assert {"Ga", "Ge", "graphite", "Dy", "Tb", "Sb", "Co", "Li", "W"} <= profiled
        assert len(on_incidents - profiled) <= 4  # only minor rare earths go without
        lists = {c.ministry_code: c.countries for c in (await session.scalars(select(ConcernList)))}
        assert "CN" in lists["DOE"] and "CN" in lists["METI"]
        unscored = await session.scalar(
            select(func.count()).where(Incident.priority_breakdown.is_(None))
        )
        assert unscored == 0
        top = await session.scalar(select(func.max(Incident.priority_score)))
        assert top is not None and 0 < top <= 100
