"""Stored priorities: recomputed by the register's and the weights' write paths, set-based,
without touching the incident's version or updated_at; the weights API and its log."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.db import Database
from app.incidents.models import Incident
from app.priority.score import DEFAULT_COMPONENT_WEIGHTS, DEFAULT_SECTOR_CRITICALITY
from app.priority.service import recompute_priority
from tests.conftest import MakeActor, assert_problem
from tests.incidents.helpers import create
from tests.register.helpers import csv_file, csv_row, post_csv, set_concern, set_profile

WEIGHTS = "/api/v1/priority-weights"


async def _incident(client, actor, incident) -> dict:
    response = await client.get(f"/api/v1/incidents/{incident['id']}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _components(incident: dict) -> dict[str, dict]:
    return {c["name"]: c for c in incident["priority_breakdown"]["components"]}


async def test_a_profile_change_recomputes_the_open_incidents_on_its_mineral(
    client, make_actor: MakeActor
):
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    ga = await create(client, reporter, days_of_cover={}, severity="SEV2")
    li = await create(client, reporter, minerals=["Li"], days_of_cover={})
    # Scored when reported; no profile yet, so no days of cover.
    assert _components(ga)["days_of_cover"]["input"] is None
    li_scored = li["priority_breakdown"]

    await set_profile(client, lead, "Ga", "US", days_of_cover=18)
    after = await _incident(client, lead, ga)
    cover = _components(after)["days_of_cover"]
    assert (cover["input"], cover["basis"]["source"], cover["basis"]["mineral"]) == (
        18,
        "profile",
        "Ga",
    )
    assert after["priority_score"] == pytest.approx(
        sum(c["contribution"] for c in after["priority_breakdown"]["components"])
    )
    assert after["priority_score"] > 0
    # Not an edit of the incident: same version and ETag, same updated_at.
    assert (after["version"], after["updated_at"]) == (ga["version"], ga["updated_at"])
    # The lithium incident is on another mineral: untouched.
    assert (await _incident(client, lead, li))["priority_breakdown"] == li_scored

    # A CSV import recomputes too, and a lower cover raises the score.
    response = await post_csv(client, lead, csv_file(csv_row("Ga", days="2", as_of="2026-11-01")))
    assert response.status_code == 201, response.text
    assert response.json()["recomputed_incidents"] == 1
    again = await _incident(client, lead, ga)
    assert _components(again)["days_of_cover"]["input"] == 2
    assert again["priority_score"] > after["priority_score"]


async def test_a_concern_list_change_recomputes_every_open_incident(client, make_actor: MakeActor):
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    ga = await create(client, reporter)
    await set_profile(client, lead, "Ga", "US")  # CN 54 % of imports, reliance 100 %
    before = _components(await _incident(client, lead, ga))["concern_dependence"]
    assert before["input"] == 0  # no list yet: nothing is of concern
    await set_concern(client, lead, "DOE", ["CN"])
    after = _components(await _incident(client, lead, ga))["concern_dependence"]
    assert after["input"] == 54
    assert after["basis"]["country"] == "US"
    assert after["contribution"] > 0


async def test_weights_change_recomputes_and_is_recorded(client, make_actor: MakeActor):
    reporter, admin = await make_actor("responder", "DOE"), await make_actor("admin", "METI")
    incident = await create(client, reporter, severity="SEV1", supply_share_affected_pct=10)
    current = await client.get(WEIGHTS, headers=reporter.headers)
    assert (current.json()["version"], current.headers["etag"]) == (0, '"0"')
    assert current.json()["components"] == DEFAULT_COMPONENT_WEIGHTS
    only_severity = {name: 0 for name in DEFAULT_COMPONENT_WEIGHTS} | {"severity": 1}
    body = {"components": only_severity, "sectors": DEFAULT_SECTOR_CRITICALITY}
    changed = await client.put(WEIGHTS, json=body, headers={**admin.headers, "If-Match": '"0"'})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["version"], changed.headers["etag"]) == (1, '"1"')
    after = await _incident(client, reporter, incident)
    assert after["priority_score"] == 100  # SEV1 is the only thing that counts now
    assert after["priority_breakdown"]["weights_version"] == 1
    log = (await client.get(f"{WEIGHTS}/changes", headers=reporter.headers)).json()["items"]
    assert [(c["version"], c["changed_by"]["id"]) for c in log] == [(1, str(admin.id))]
    assert log[0]["before"]["components"] == DEFAULT_COMPONENT_WEIGHTS
    assert log[0]["after"]["components"] == only_severity


@pytest.mark.parametrize(
    ("ministry", "role", "status"),
    [("DOE", "admin", 200), ("METI", "admin", 200), ("DOE", "lead", 403), ("JOGMEC", "admin", 403)],
)
async def test_only_co_lead_admins_set_weights(
    client, db: Database, make_actor: MakeActor, ministry, role, status
):
    if ministry == "JOGMEC":
        from tests.incidents.test_visibility import add_partner

        await add_partner(db)
    actor = await make_actor(role, ministry)
    body = {"components": DEFAULT_COMPONENT_WEIGHTS, "sectors": DEFAULT_SECTOR_CRITICALITY}
    response = await client.put(WEIGHTS, json=body, headers={**actor.headers, "If-Match": "*"})
    assert response.status_code == status, response.text
    version = (await client.get(WEIGHTS, headers=actor.headers)).json()["version"]
    assert version == (1 if status == 200 else 0)


@pytest.mark.parametrize(
    ("components", "sectors", "field"),
    [
        ({**DEFAULT_COMPONENT_WEIGHTS, "severity": -1}, DEFAULT_SECTOR_CRITICALITY, "components"),
        ({"severity": 1}, DEFAULT_SECTOR_CRITICALITY, "components"),
        (
            {name: 0 for name in DEFAULT_COMPONENT_WEIGHTS},
            DEFAULT_SECTOR_CRITICALITY,
            "components",
        ),
        (DEFAULT_COMPONENT_WEIGHTS, {**DEFAULT_SECTOR_CRITICALITY, "defense": 2}, "sectors"),
        (DEFAULT_COMPONENT_WEIGHTS, {**DEFAULT_SECTOR_CRITICALITY, "space": 1}, "sectors"),
    ],
)
async def test_bad_weights_are_422_and_change_nothing(
    client, make_actor: MakeActor, components, sectors, field
):
    admin = await make_actor("admin", "DOE")
    response = await client.put(
        WEIGHTS,
        json={"components": components, "sectors": sectors},
        headers={**admin.headers, "If-Match": '"0"'},
    )
    body = assert_problem(response, 422)
    assert any(e["field"].startswith(field) for e in body["errors"]), body
    assert (await client.get(WEIGHTS, headers=admin.headers)).json()["version"] == 0


async def test_weights_need_the_current_etag(client, make_actor: MakeActor):
    admin = await make_actor("admin", "DOE")
    body = {"components": DEFAULT_COMPONENT_WEIGHTS, "sectors": DEFAULT_SECTOR_CRITICALITY}
    assert_problem(await client.put(WEIGHTS, json=body, headers=admin.headers), 428)
    stale = await client.put(WEIGHTS, json=body, headers={**admin.headers, "If-Match": '"4"'})
    assert_problem(stale, 412)


async def _ids(db: Database) -> list[uuid.UUID]:
    async with db.unit_of_work(readonly=True) as session:
        return list((await session.scalars(select(Incident.id))).all())


async def test_recompute_is_set_based_and_picks_up_changed_fields(
    client, db: Database, make_actor: MakeActor, count_queries
):
    reporter = await make_actor("responder", "DOE")
    for _ in range(3):
        await create(client, reporter)
    few = await _ids(db)
    counter = count_queries()
    async with db.unit_of_work() as session:
        assert await recompute_priority(session, few) == 3
    small = counter.count
    for _ in range(27):
        await create(client, reporter)
    many = await _ids(db)
    counter = count_queries()
    async with db.unit_of_work() as session:
        assert await recompute_priority(session, many) == 30
    assert counter.count == small  # the same statements for 30 incidents as for 3

    # The hook the incident write paths will call: a changed field changes the score.
    incident = await create(client, reporter, severity="SEV4")
    async with db.unit_of_work() as session:
        await recompute_priority(session, [uuid.UUID(incident["id"])])
    low = (await _incident(client, reporter, incident))["priority_score"]
    async with db.unit_of_work() as session:
        row = await session.get(Incident, uuid.UUID(incident["id"]))
        assert row is not None
        row.severity = "SEV1"
        await session.flush()
        await recompute_priority(session, [row.id])
        assert row.priority_score > low  # the loaded object is kept in step
    assert (await _incident(client, reporter, incident))["priority_score"] > low
