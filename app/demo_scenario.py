"""The demo scenario: incidents modelled on real export measures, in every state.

Built through the same services the API uses, with the clock walked forward from five
weeks ago, so timelines carry realistic times and some approved actions are now overdue.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.actions import service as actions
from app.actions.models import Action
from app.actions.schemas import ActionCreate, ActionTransitionRequest
from app.actions.vocabulary import ministries_of
from app.auth.models import User
from app.auth.service import Principal
from app.demo_profiles import load_register
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.incidents.schemas import IncidentCreate, IncidentUpdate, TransitionRequest
from app.priority.service import recompute_priority

Cast = dict[tuple[str, str], User]  # (ministry, role) -> user


@contextmanager
def _at(moment: datetime) -> Iterator[None]:
    clock.set_source(lambda: moment)
    try:
        yield
    finally:
        clock.reset()


class Scenario:
    def __init__(self, session: AsyncSession, cast: Cast, start: datetime) -> None:
        self.session, self.cast, self.now = session, cast, start

    def who(self, ministry: str, role: str) -> Principal:
        return Principal(user=self.cast[(ministry, role)])

    def later(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    async def report(self, ministry: str, **fields: Any) -> Incident:
        with _at(self.now):
            created = await incidents.create(
                self.session, self.who(ministry, "responder"), IncidentCreate(**fields)
            )
        return created.incident

    async def triage(self, incident: Incident, severity: str) -> Incident:
        with _at(self.now):
            doe, meti = self.who("DOE", "lead"), self.who("METI", "lead")
            incident = await incidents.assign_owner(
                self.session, doe, incident, "DOE", doe.user.id, None
            )
            incident = await incidents.assign_owner(
                self.session, meti, incident, "METI", meti.user.id, None
            )
            incident = await incidents.update_fields(
                self.session, doe, incident, incident.version, IncidentUpdate(severity=severity)
            )
            return await self.move(incident, "triaged")

    async def move(self, incident: Incident, to: str, **extra: Any) -> Incident:
        with _at(self.now):
            return await incidents.transition(
                self.session,
                self.who("DOE", "lead"),
                incident,
                incident.version,
                TransitionRequest(to=to, **extra),
            )

    async def comment(self, incident: Incident, ministry: str, body: str) -> None:
        with _at(self.now):
            await incidents.add_comment(
                self.session, self.who(ministry, "responder"), incident, body
            )

    async def action(
        self,
        incident: Incident,
        ministry: str,
        title: str,
        kind: str,
        *,
        due_in_days: float | None,
        status: str = "proposed",
        assignee: tuple[str, str] | None = None,
        note: str = "",
    ) -> Action:
        """Propose an action and walk it to ``status`` through the real lifecycle."""
        owner = "DOE" if ministry == "JOINT" else ministry
        assignee = assignee or (owner, "responder")
        with _at(self.now):
            action = await actions.create(
                self.session,
                self.who(owner, "responder"),
                incident,
                ActionCreate(
                    title=title,
                    kind=kind,
                    owning_ministry=ministry,
                    assignee_id=self.cast[assignee].id,
                    priority="high" if due_in_days is not None and due_in_days < 7 else "medium",
                    due_at=self.now + timedelta(days=due_in_days) if due_in_days else None,
                    description=note,
                ),
            )
            if status == "proposed":
                return action
            if status == "rejected":
                return await self._act(action, owner, "rejected", reason="Not proportionate now")
            approvers = ministries_of(ministry)
            for approver in approvers:
                action = await actions.approve(self.session, self.who(approver, "lead"), action)
            path = {
                "approved": [],
                "in_progress": ["in_progress"],
                "blocked": ["in_progress", "blocked"],
                "completed": ["in_progress", "completed"],
                "cancelled": ["cancelled"],
            }[status]
            for step in path:
                action = await self._act(
                    action,
                    owner,
                    step,
                    reason="Awaiting export licence decision"
                    if step != "cancelled"
                    else "Superseded by the joint procurement",
                    outcome="Delivered as planned; see the attached report.",
                )
            return action

    async def _act(self, action: Action, owner: str, to: str, **extra: Any) -> Action:
        return await actions.transition(
            self.session,
            self.who(owner, "lead"),
            action,
            action.version,
            ActionTransitionRequest(to=to, **extra),
        )

    async def sign_off(self, incident: Incident, ministry: str) -> None:
        with _at(self.now):
            await incidents.sign_off(self.session, self.who(ministry, "lead"), incident, None)


def _source(title: str, url: str, day: str) -> dict[str, str]:
    return {"title": title, "url": url, "published_at": f"{day}T00:00:00Z"}


async def load_scenario(session: AsyncSession, cast: Cast) -> int:
    """Load the scenario; returns how many incidents it created."""
    s = Scenario(session, cast, clock.now() - timedelta(days=35))

    # 1. Gallium and germanium export licensing (in force 1 August 2023) — responding.
    gallium = await s.report(
        "DOE",
        title="Export licensing on gallium and germanium",
        summary="Exports of gallium and germanium metals and compounds now need a licence. "
        "US and Japanese compound-semiconductor fabs report **licence delays of 45+ days**.\n\n"
        "ガリウム・ゲルマニウムの輸出に許可制が導入され、化合物半導体向け供給に遅延が発生。",
        minerals=["Ga", "Ge"],
        category="export_control",
        origin_country="CN",
        affected_sectors=["semiconductors", "defense", "electronics"],
        supply_share_affected_pct=94,
        days_of_cover={"US": 40, "JP": 75},
        price_change_pct=27,
        estimated_shortfall_tonnes_per_month=18,
        tlp="GREEN",
        severity="SEV2",
        sources=[_source("Licensing notice", "https://example.org/ga-ge-licensing", "2023-07-03")],
    )
    s.later(hours=3)
    gallium = await s.triage(gallium, "SEV2")
    await s.comment(gallium, "METI", "JOGMEC can assess a stockpile release within two weeks.")
    s.later(days=1)
    await s.action(
        gallium,
        "METI",
        "Assess national stockpile release of gallium",
        "stockpile_release",
        due_in_days=10,
        status="completed",
        assignee=("METI", "responder"),
    )
    await s.action(
        gallium,
        "DOE",
        "Qualify recycled gallium from GaAs scrap",
        "recycling",
        due_in_days=20,
        status="in_progress",
    )
    await s.action(
        gallium,
        "JOINT",
        "Share licence-delay data weekly",
        "information_sharing",
        due_in_days=60,
        status="approved",
        assignee=("METI", "responder"),
    )
    await s.action(
        gallium,
        "DOE",
        "Fast-track permits for a domestic germanium circuit",
        "permit_fast_track",
        due_in_days=12,
        status="blocked",
    )
    gallium = await s.move(gallium, "responding")

    # 2. Graphite export controls (from 1 December 2023) — monitoring.
    s.later(days=2)
    graphite = await s.report(
        "METI",
        title="黒鉛（グラファイト）の輸出管理強化",
        summary="High-purity and spherical graphite for battery anodes now needs an export "
        "licence. Anode makers in both countries hold about two months of stock.",
        minerals=["graphite"],
        category="export_control",
        origin_country="CN",
        affected_sectors=["automotive", "energy"],
        supply_share_affected_pct=77,
        days_of_cover={"US": 55, "JP": 62},
        tlp="AMBER",
        sources=[
            _source("Graphite controls", "https://example.org/graphite-controls", "2023-10-20")
        ],
    )
    s.later(hours=5)
    graphite = await s.triage(graphite, "SEV3")
    await s.action(
        graphite,
        "JOINT",
        "Joint offtake with allied anode producers",
        "joint_procurement",
        due_in_days=30,
        status="in_progress",
        assignee=("DOE", "responder"),
    )
    await s.action(
        graphite,
        "METI",
        "Demand management guidance for anode makers",
        "demand_management",
        due_in_days=14,
        status="cancelled",
    )
    graphite = await s.move(graphite, "responding")
    s.later(days=3)
    await s.comment(graphite, "DOE", "Licences are being granted at ~60% of the usual volume.")
    graphite = await s.move(graphite, "monitoring")

    # 3. Medium and heavy rare-earth licensing (April 2025) — responding, SEV1, some overdue.
    s.later(days=2)
    heavy = await s.report(
        "DOE",
        title="Licensing on medium and heavy rare earths (Sm, Gd, Tb, Dy, Lu, Sc, Y)",
        summary="Seven medium and heavy rare earths and their magnets need export licences. "
        "Magnet makers for defense and EV motors report shipments held at customs.",
        minerals=["Dy", "Tb", "Sm", "Gd", "Lu", "Sc", "Y"],
        category="export_control",
        origin_country="CN",
        affected_sectors=["defense", "automotive", "aerospace"],
        supply_share_affected_pct=99,
        days_of_cover={"US": 21, "JP": 90},
        price_change_pct=140,
        tlp="AMBER",
        sources=[
            _source("Rare-earth licensing", "https://example.org/ree-licensing", "2025-04-04")
        ],
    )
    s.later(hours=1)
    heavy = await s.triage(heavy, "SEV1")
    await s.action(
        heavy,
        "JOINT",
        "Joint procurement of Dy/Tb from allied separation plants",
        "joint_procurement",
        due_in_days=9,
        status="in_progress",
        assignee=("DOE", "responder"),
    )
    await s.action(
        heavy,
        "DOE",
        "Release DLA stockpile of samarium-cobalt magnets",
        "stockpile_release",
        due_in_days=5,
        status="approved",
    )
    await s.action(
        heavy,
        "METI",
        "重希土類の代替調達（豪州・マレーシア）",
        "alternative_sourcing",
        due_in_days=7,
        status="in_progress",
        assignee=("METI", "responder"),
    )
    await s.action(
        heavy,
        "JOINT",
        "Finance a heavy rare-earth separation line",
        "financing",
        due_in_days=None,
        status="proposed",
    )
    await s.action(
        heavy,
        "DOE",
        "Diplomatic outreach for general licences",
        "diplomatic_outreach",
        due_in_days=3,
        status="rejected",
    )
    heavy = await s.move(heavy, "responding")

    # 4. Antimony export ban to the US (December 2024) — resolved, awaiting METI sign-off.
    s.later(days=4)
    antimony = await s.report(
        "DOE",
        title="Antimony exports to the United States banned",
        summary="A ban on antimony, gallium and germanium exports to the US. Antimony is "
        "critical for munitions and flame retardants.",
        minerals=["Sb"],
        category="sanctions",
        origin_country="CN",
        affected_sectors=["defense"],
        supply_share_affected_pct=48,
        days_of_cover={"US": 30, "JP": 120},
        tlp="AMBER+STRICT",
    )
    antimony = await s.triage(antimony, "SEV2")
    await s.action(
        antimony,
        "DOE",
        "Contract antimony from allied smelters",
        "alternative_sourcing",
        due_in_days=6,
        status="completed",
    )
    antimony = await s.move(antimony, "responding")
    s.later(days=6)
    antimony = await s.move(
        antimony, "resolved", resolution_summary="Allied supply contracted for 18 months."
    )
    await s.sign_off(antimony, "DOE")

    # 5. Cobalt export suspension (February 2025) — closed after both sign-offs.
    s.later(days=1)
    cobalt = await s.report(
        "METI",
        title="Cobalt export suspension",
        summary="A four-month suspension of cobalt exports to rebalance prices.",
        minerals=["Co"],
        category="export_control",
        origin_country="CD",
        affected_sectors=["automotive", "energy", "aerospace"],
        supply_share_affected_pct=70,
        price_change_pct=60,
        tlp="GREEN",
    )
    cobalt = await s.triage(cobalt, "SEV3")
    await s.action(
        cobalt,
        "METI",
        "Monitor refinery intake in Japan",
        "information_sharing",
        due_in_days=4,
        status="completed",
        assignee=("METI", "responder"),
    )
    cobalt = await s.move(cobalt, "responding")
    s.later(days=3)
    cobalt = await s.move(cobalt, "resolved", resolution_summary="Inventories sufficient.")
    await s.sign_off(cobalt, "DOE")
    await s.sign_off(cobalt, "METI")
    cobalt = await s.move(cobalt, "closed")

    # 6. A duplicate report, rejected; 7. a lithium price watch; 8. an untriaged tungsten report.
    dup = await s.report(
        "METI",
        title="Graphite licences (duplicate report)",
        minerals=["graphite"],
        category="export_control",
        tlp="GREEN",
    )
    await s.move(dup, "rejected", reason="Duplicate", duplicate_of=graphite.key)
    await s.report(
        "DOE",
        title="Lithium carbonate price spike",
        minerals=["Li"],
        category="price_spike",
        price_change_pct=35,
        tlp="CLEAR",
        status="watch",
    )
    s.later(days=5)
    await s.report(
        "METI",
        title="Tungsten concentrate shipments halted at port",
        minerals=["W"],
        category="logistics_disruption",
        origin_country="CN",
        affected_sectors=["defense", "electronics"],
        tlp="RED",
        severity="SEV2",
    )

    # The register (illustrative figures) and every incident's priority from it.
    await load_register(session, {"DOE": cast[("DOE", "lead")], "METI": cast[("METI", "lead")]})
    ids = (await session.scalars(select(Incident.id))).all()
    await recompute_priority(session, ids)
    return 8
