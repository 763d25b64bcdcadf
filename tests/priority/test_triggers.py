"""When priorities are recomputed: by the incident write paths that change an input (and no
others), by the worker for big recomputes queued by a request, by the time-based rescoring;
and the incident list sorted by priority, keyset-paginated."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db import Database
from app.priority import service as priority_service
from app.priority.models import PriorityRecomputeJob
from app.priority.score import DEFAULT_SECTOR_CRITICALITY
from app.priority.service import rescore_by_time, run_recompute_jobs
from tests.conftest import Actor, MakeActor, assert_problem
from tests.escalation.helpers import T0, Clock
from tests.incidents.helpers import create

Json = dict[str, Any]
INCIDENTS = "/api/v1/incidents"


@pytest.fixture
def frozen(db: Database) -> Clock:
    return Clock()


async def read(client: httpx.AsyncClient, actor: Actor, incident: Json) -> httpx.Response:
    response = await client.get(f"{INCIDENTS}/{incident['id']}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return response


async def edit(client: httpx.AsyncClient, actor: Actor, incident: Json, **fields: Any) -> Json:
    current = await read(client, actor, incident)
    response = await client.patch(
        f"{INCIDENTS}/{incident['id']}",
        json=fields,
        headers={**actor.headers, "If-Match": current.headers["etag"]},
    )
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def z(at: datetime) -> str:
    """A time as the API writes it."""
    return at.isoformat().replace("+00:00", "Z")


def component(incident: Json, name: str) -> Json:
    found: Json = next(c for c in incident["priority_breakdown"]["components"] if c["name"] == name)
    return found


async def test_incident_writes_recompute_when_an_input_changes_and_only_then(
    client: httpx.AsyncClient, make_actor: MakeActor, frozen: Clock
):
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    incident = await create(client, reporter, severity="SEV4")
    scored = incident["priority_breakdown"]
    assert scored is not None and scored["computed_at"] == z(T0)
    assert incident["priority_score"] == pytest.approx(
        sum(c["contribution"] for c in scored["components"])
    )

    frozen.advance(timedelta(minutes=1))
    graver = await edit(client, lead, incident, severity="SEV1")
    assert graver["priority_score"] > incident["priority_score"]
    assert component(graver, "severity")["input"] == "SEV1"
    assert graver["priority_breakdown"]["computed_at"] == z(frozen.at)

    # Edits of fields the score does not read, and other events, leave the score alone.
    frozen.advance(timedelta(minutes=1))
    retitled = await edit(client, lead, incident, title="Gallium licences: update")
    assert retitled["priority_breakdown"] == graver["priority_breakdown"]
    comment = await client.post(
        f"{INCIDENTS}/{incident['id']}/comments", json={"body": "Seen."}, headers=lead.headers
    )
    assert comment.status_code == 201, comment.text
    assert (await read(client, lead, incident)).json()["priority_breakdown"] == graver[
        "priority_breakdown"
    ]

    for fields, name in [
        ({"supply_share_affected_pct": 5}, "supply_share"),
        ({"days_of_cover": {"US": 3}}, "days_of_cover"),
        ({"affected_sectors": ["other"]}, "sector_criticality"),
        ({"effective_at": (T0 + timedelta(days=9)).isoformat()}, "time_to_effect"),
        ({"minerals": ["Li"]}, "severity"),
    ]:
        frozen.advance(timedelta(minutes=1))
        changed = await edit(client, lead, incident, **fields)
        assert changed["priority_breakdown"]["computed_at"] == z(frozen.at), fields
        if name != "severity":
            assert component(changed, name) != component(graver, name), fields


async def test_a_big_recompute_is_queued_and_done_by_the_worker_in_batches(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(priority_service, "INLINE_LIMIT", 2)
    reporter, admin = await make_actor("responder", "DOE"), await make_actor("admin", "DOE")
    incidents = [await create(client, reporter, severity="SEV1") for _ in range(5)]
    only_severity = {
        "components": {
            "severity": 1,
            "supply_share": 0,
            "days_of_cover": 0,
            "concern_dependence": 0,
            "sector_criticality": 0,
            "time_to_effect": 0,
        },
        "sectors": DEFAULT_SECTOR_CRITICALITY,
    }
    changed = await client.put(
        "/api/v1/priority-weights", json=only_severity, headers={**admin.headers, "If-Match": '"0"'}
    )
    assert changed.status_code == 200, changed.text
    # The request only queued the work: every score is still from the old weights.
    for incident in incidents:
        body = (await read(client, reporter, incident)).json()
        assert body["priority_breakdown"]["weights_version"] == 0
    async with db.unit_of_work(readonly=True) as session:
        [job] = (await session.scalars(select(PriorityRecomputeJob))).all()
    assert (job.reason, job.minerals, job.finished_at) == ("weights", None, None)

    assert await run_recompute_jobs(db, batch=2) == 5
    for incident in incidents:
        body = (await read(client, reporter, incident)).json()
        assert body["priority_breakdown"]["weights_version"] == 1
        assert body["priority_score"] == 100
    async with db.unit_of_work(readonly=True) as session:
        [job] = (await session.scalars(select(PriorityRecomputeJob))).all()
    assert job.finished_at is not None and job.recomputed == 5
    assert await run_recompute_jobs(db) == 0  # nothing left to do


async def test_time_based_rescoring_touches_only_scores_time_can_still_move(
    client: httpx.AsyncClient, db: Database, make_actor: MakeActor, frozen: Clock
):
    reporter = await make_actor("responder", "DOE")
    soon = await create(client, reporter, effective_at=(T0 + timedelta(days=30)).isoformat())
    await create(client, reporter)  # no effective time
    await create(client, reporter, effective_at=(T0 - timedelta(days=1)).isoformat())  # past
    await create(client, reporter, effective_at=(T0 + timedelta(days=200)).isoformat())  # far

    assert await rescore_by_time(db) == 1
    before = component((await read(client, reporter, soon)).json(), "time_to_effect")
    frozen.advance(timedelta(days=10))
    assert await rescore_by_time(db) == 1
    after = component((await read(client, reporter, soon)).json(), "time_to_effect")
    assert after["contribution"] > before["contribution"]
    assert after["basis"]["days_left"] == 20

    # Once it has taken effect the component is at its maximum: rescored once more, then left.
    frozen.advance(timedelta(days=25))
    assert await rescore_by_time(db) == 1
    assert (
        component((await read(client, reporter, soon)).json(), "time_to_effect")["normalised"] == 1
    )
    assert await rescore_by_time(db) == 0


async def test_the_list_sorts_by_priority_with_a_keyset_cursor(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, viewer = await make_actor("responder", "DOE"), await make_actor("viewer", "METI")
    made = {
        severity: await create(client, reporter, severity=severity)
        for severity in ("SEV3", "SEV1", "SEV4", "SEV2", "SEV1")
    }
    await create(client, reporter, severity="SEV1", tlp="RED")  # the viewer may not see it
    seen: list[Json] = []
    cursor = None
    for _ in range(10):
        params: Json = {"sort": "-priority", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get(INCIDENTS, params=params, headers=viewer.headers)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and {i["tlp"] for i in seen} == {"GREEN"}
    keys = [(i["priority_score"], i["id"]) for i in seen]
    assert keys == sorted(keys, reverse=True)
    assert [i["severity"] for i in seen] == ["SEV1", "SEV1", "SEV2", "SEV3", "SEV4"]
    ascending = await client.get(
        INCIDENTS, params={"sort": "priority", "limit": 50}, headers=viewer.headers
    )
    assert [i["id"] for i in ascending.json()["items"]] == [i["id"] for i in reversed(seen)]
    assert made["SEV4"]["id"] == seen[-1]["id"]

    # A forged cursor is a 422 naming it: a number JSON reads as infinite, a string, a null.
    for value in ("1e999", '"high"', "null", "true"):
        raw = f'["incidents:-priority",{value},"{uuid.uuid4()}"]'.encode()
        forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        response = await client.get(
            INCIDENTS, params={"sort": "-priority", "cursor": forged}, headers=viewer.headers
        )
        assert assert_problem(response, 422)["errors"][0]["field"] == "cursor", value
