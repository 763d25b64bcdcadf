"""TLP visibility (SPEC §6) through every incident read path, list query counts, pagination.

The expected visibility is computed by ``may_see`` below, written from the SPEC §6 table
independently of ``app.incidents.visibility``. Every (user, incident) cell is checked on the
list, text search, TLP filter, detail (by id and by key), timeline, comments and actions; the
unseen cells also on every write path (404, as if the incident did not exist; nothing written).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app import clock
from app.db import Database
from app.incidents.models import Incident, IncidentMineral, IncidentParticipant, IncidentSignoff
from app.ministries.models import Ministry
from tests.conftest import Actor, MakeActor, QueryCounter, assert_problem
from tests.incidents.helpers import assign, create

TLPS = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
ROLES = ("viewer", "responder", "lead", "admin")
MINISTRIES = ("DOE", "METI", "JOGMEC")
CO_LEADS = frozenset({"DOE", "METI"})
PARTNER = "JOGMEC"
COMMON_WORD = "visprobe"
COMMENT = "Matrix comment: stockpile draw-down under review."
# Requests in flight at once: enough to overlap database round trips, few enough to stay
# well inside the connection pool of a shared PostgreSQL server.
CONCURRENCY = 6


async def gather_bounded(*aws: Awaitable[Any]) -> list[Any]:
    """Await all, at most CONCURRENCY at a time; on a failure the rest are cancelled and
    awaited (nothing keeps running into the fixtures' teardown)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(aw: Awaitable[Any]) -> Any:
        async with gate:
            return await aw

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(aw)) for aw in aws]
    return [task.result() for task in tasks]


async def add_partner(db: Database, code: str = PARTNER) -> None:
    """A partner organisation (removed again by the fixtures' clear_data)."""
    async with db.unit_of_work() as session:
        session.add(
            Ministry(
                code=code,
                name="Japan Organization for Metals and Energy Security",
                name_ja="エネルギー・金属鉱物資源機構",
                country="JP",
                timezone="Asia/Tokyo",
                kind="partner",
            )
        )


@dataclass
class Probe:
    """An incident under test and what the oracle needs to know about it."""

    id: str
    key: str
    tlp: str
    reporter_ministry: str
    named: set[uuid.UUID] = field(default_factory=set)


def may_see(actor: Actor, incident: Probe) -> bool:
    """SPEC §6, literally."""
    ministry = actor.user.ministry.code
    if incident.tlp in ("CLEAR", "GREEN"):
        return True
    if incident.tlp == "AMBER":
        return ministry in CO_LEADS
    if incident.tlp == "AMBER+STRICT":
        return ministry == incident.reporter_ministry or actor.id in incident.named
    assert incident.tlp == "RED"
    return actor.id in incident.named


def who(actor: Actor) -> str:
    return f"{actor.user.ministry.code} {actor.user.role} ({actor.user.email})"


async def report_probe(client: httpx.AsyncClient, reporter: Actor, tlp: str, n: int) -> Probe:
    """Report an incident through the API and comment on it as the reporter."""
    body = await create(
        client, reporter, tlp=tlp, title=f"{COMMON_WORD} {n}: gallium licensing ({tlp})"
    )
    comment = await client.post(
        f"/api/v1/incidents/{body['id']}/comments", json={"body": COMMENT}, headers=reporter.headers
    )
    assert comment.status_code == 201, comment.text
    return Probe(
        id=body["id"],
        key=body["key"],
        tlp=tlp,
        reporter_ministry=reporter.user.ministry.code,
        named={reporter.id},
    )


async def list_keys(client: httpx.AsyncClient, actor: Actor, **params: Any) -> list[str]:
    response = await client.get(
        "/api/v1/incidents", params={"limit": 200, **params}, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return [item["key"] for item in page["items"]]


def is_problem_404(response: httpx.Response) -> bool:
    return (
        response.status_code == 404
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and response.json().get("status") == 404
    )


async def check_lists(client: httpx.AsyncClient, actor: Actor, probes: list[Probe]) -> list[str]:
    """The list, text searches and TLP filters show exactly the visible probes they match."""
    last = probes[-1]  # the most restricted marking
    odd, even = TLPS[0::2], TLPS[1::2]  # CLEAR, AMBER, RED / GREEN, AMBER+STRICT
    lookups: list[tuple[dict[str, Any], Callable[[Probe], bool]]] = [
        ({}, lambda p: True),
        ({"q": COMMON_WORD.upper()}, lambda p: True),  # title search
        ({"q": last.key.lower()}, lambda p: p.key == last.key),  # key search
        ({"tlp": list(odd)}, lambda p: p.tlp in odd),
        ({"tlp": list(even)}, lambda p: p.tlp in even),
    ]
    results = await gather_bounded(*(list_keys(client, actor, **params) for params, _ in lookups))
    failures = []
    for (params, matches), got in zip(lookups, results, strict=True):
        expected = sorted(p.key for p in probes if matches(p) and may_see(actor, p))
        if sorted(got) != expected:
            failures.append(f"{who(actor)}: list {params} gives {sorted(got)}, not {expected}")
    return failures


async def check_cell(
    client: httpx.AsyncClient, actor: Actor, probe: Probe, *, writes: bool
) -> list[str]:
    """Every per-incident read path agrees with the oracle (and unseen writes answer 404)."""
    seen = may_see(actor, probe)
    cell = f"{who(actor)} x {probe.tlp} {probe.key}: expected {'seen' if seen else 'unseen'}"
    base = f"/api/v1/incidents/{probe.id}"
    reads = {
        "detail by id": base,
        "detail by key": f"/api/v1/incidents/{probe.key.lower()}",
        "timeline": f"{base}/timeline",
        "comments": f"{base}/comments",
        "actions": f"{base}/actions",
    }
    if_match = {**actor.headers, "If-Match": '"1"'}
    attempts = [
        ("PATCH", base, {"title": "leak"}, if_match),
        ("POST", f"{base}/transitions", {"to": "rejected", "reason": "leak"}, if_match),
        ("PUT", f"{base}/owners/METI", {"user_id": str(actor.id)}, actor.headers),
        ("POST", f"{base}/participants", {"user_id": str(actor.id)}, actor.headers),
        ("POST", f"{base}/signoffs", {"note": "leak"}, actor.headers),
        ("POST", f"{base}/comments", {"body": "leak"}, actor.headers),
    ]
    if seen or not writes:
        attempts = []
    responses = await gather_bounded(
        *(client.get(url, headers=actor.headers) for url in reads.values()),
        *(client.request(m, url, json=body, headers=h) for m, url, body, h in attempts),
    )
    failures: list[str] = []
    for label, response in zip(reads, responses, strict=False):
        if not seen:
            if not is_problem_404(response):
                failures.append(f"{cell}, {label} answers {response.status_code}")
            continue
        if response.status_code != 200:
            failures.append(f"{cell}, {label} answers {response.status_code}")
            continue
        body = response.json()
        if label.startswith("detail"):
            ok = body["id"] == probe.id and body["tlp"] == probe.tlp
        elif label == "timeline":
            ok = [e["type"] for e in body["items"]][:2] == ["incident.created", "comment.created"]
        elif label == "comments":
            ok = [e["data"]["body"] for e in body["items"]] == [COMMENT]
        else:
            ok = body["items"] == []
        if not ok:
            failures.append(f"{cell}, {label} body is wrong: {body}")
    for (method, url, _, _), response in zip(attempts, responses[len(reads) :], strict=True):
        if not is_problem_404(response):
            failures.append(f"{cell}, {method} {url} answers {response.status_code}")
    return failures


async def check_grid(
    client: httpx.AsyncClient, actors: list[Actor], probes: list[Probe], *, writes: bool
) -> list[str]:
    failures: list[str] = []
    for actor in actors:
        failures += await check_lists(client, actor, probes)
        for probe in probes:
            failures += await check_cell(client, actor, probe, writes=writes)
    return failures


async def make_matrix(make_actor: MakeActor) -> list[Actor]:
    return [await make_actor(role, ministry) for ministry in MINISTRIES for role in ROLES]


async def test_tlp_matrix_on_every_read_path(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
) -> None:
    await add_partner(db)
    reporter = await make_actor("responder", "DOE")  # named on everything: kept out of the grid
    actors = await make_matrix(make_actor)
    probes = [await report_probe(client, reporter, tlp, n) for n, tlp in enumerate(TLPS)]

    # The oracle really distinguishes the cells (12 users x 5 markings): 36 seen, 24 unseen.
    grid = [may_see(a, p) for a in actors for p in probes]
    assert (grid.count(True), grid.count(False)) == (36, 24)

    failures = await check_grid(client, actors, probes, writes=True)
    assert not failures, "\n".join(failures)

    # The reporter sees all five; an unseen incident is indistinguishable from a missing one.
    assert sorted(await list_keys(client, reporter)) == sorted(p.key for p in probes)
    partner_admin = actors[MINISTRIES.index(PARTNER) * len(ROLES) + ROLES.index("admin")]
    hidden = await client.get(f"/api/v1/incidents/{probes[4].id}", headers=partner_admin.headers)
    missing = await client.get(f"/api/v1/incidents/{uuid.uuid4()}", headers=partner_admin.headers)
    keys = ("type", "title", "status", "detail")
    hidden_body, missing_body = assert_problem(hidden, 404), assert_problem(missing, 404)
    assert {k: hidden_body[k] for k in keys} == {k: missing_body[k] for k in keys}

    # None of the refused writes left a trace.
    for probe in probes:
        detail = await client.get(f"/api/v1/incidents/{probe.id}", headers=reporter.headers)
        assert detail.json()["version"] == 1, detail.json()
        assert detail.json()["participants"] == [] and detail.json()["owners"] == {
            "DOE": None,
            "METI": None,
        }
        events = await client.get(
            f"/api/v1/incidents/{probe.id}/timeline", headers=reporter.headers
        )
        assert [e["type"] for e in events.json()["items"]] == [
            "incident.created",
            "comment.created",
        ], probe


async def test_participants_and_owners_are_named(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
) -> None:
    await add_partner(db)
    reporter = await make_actor("responder", "DOE")
    actors = await make_matrix(make_actor)
    by = {(a.user.ministry.code, a.user.role): a for a in actors}
    doe_lead, meti_responder, meti_lead = (
        by["DOE", "lead"],
        by["METI", "responder"],
        by["METI", "lead"],
    )
    strict = await report_probe(client, reporter, "AMBER+STRICT", 0)
    red = await report_probe(client, reporter, "RED", 1)
    # A RED incident is for named people only: a lead who is not named cannot reach it, so
    # here the second RED incident is reported by a DOE lead who then names the METI users.
    red_reporter = await make_actor("lead", "DOE")
    red_by_lead = await report_probe(client, red_reporter, "RED", 2)
    probes = [strict, red, red_by_lead]

    assert_problem(
        await client.post(
            f"/api/v1/incidents/{red.id}/participants",
            json={"user_id": str(meti_responder.id)},
            headers=doe_lead.headers,
        ),
        404,
    )
    assert not may_see(meti_responder, strict) and not may_see(meti_lead, red_by_lead)

    for probe, lead in ((strict, doe_lead), (red_by_lead, red_reporter)):
        added = await client.post(
            f"/api/v1/incidents/{probe.id}/participants",
            json={"user_id": str(meti_responder.id)},
            headers=lead.headers,
        )
        assert added.status_code == 200, added.text
        assert [p["id"] for p in added.json()["participants"]] == [str(meti_responder.id)]
        owned = await assign(client, lead, {"id": probe.id}, "METI", meti_lead)
        assert owned.status_code == 200, owned.text
        assert owned.json()["owners"]["METI"]["id"] == str(meti_lead.id)
        probe.named |= {meti_responder.id, meti_lead.id}

    assert may_see(meti_responder, strict) and may_see(meti_lead, red_by_lead)
    assert not may_see(meti_responder, red) and not may_see(by["METI", "admin"], red_by_lead)
    # Every METI user (only two of them are named), and one DOE and one partner user.
    meti = [a for a in actors if a.user.ministry.code == "METI"]
    others = [by["DOE", "viewer"], by[PARTNER, "admin"]]
    failures = await check_grid(client, meti + others, probes, writes=False)
    assert not failures, "\n".join(failures)

    # Now named, the METI owner may act on the RED incident; the METI admin still may not.
    timeline = await client.get(
        f"/api/v1/incidents/{red_by_lead.id}/timeline", headers=meti_lead.headers
    )
    assert [e["type"] for e in timeline.json()["items"]] == [
        "incident.created",
        "comment.created",
        "incident.participant_added",
        "incident.owner_assigned",
    ]
    commented = await client.post(
        f"/api/v1/incidents/{red_by_lead.id}/comments",
        json={"body": "METI will check JOGMEC stock levels."},
        headers=meti_lead.headers,
    )
    assert commented.status_code == 201, commented.text
    assert_problem(
        await client.post(
            f"/api/v1/incidents/{red_by_lead.id}/comments",
            json={"body": "admin"},
            headers=by["METI", "admin"].headers,
        ),
        404,
    )


# --- query count ---------------------------------------------------------------------------


def new_incident(number: int, reporter: Actor, at: datetime, **fields: Any) -> Incident:
    """An incident row for seeding straight into the database (the API would take seconds)."""
    values: dict[str, Any] = {
        "title": f"Seeded incident {number}",
        "category": "export_control",
        "tlp": "GREEN",
        "status": "reported",
        "reported_at": at,
        "created_at": at,
        "updated_at": at,
        "mineral_links": [IncidentMineral(mineral_code="Ga")],
        "participant_links": [],
        **fields,
    }
    return Incident(
        number=number,
        key=f"RRG-{number:04d}",
        reporter_id=reporter.id,
        reporter_ministry_id=reporter.user.ministry_id,
        **values,
    )


async def seed_rich_incidents(
    db: Database, n: int, reporter: Actor, owners: list[Actor], helpers: list[Actor]
) -> None:
    """``n`` GREEN incidents, each with both owners, one to three participants, two to four
    minerals and a sign-off of its current resolution (so every part of the representation
    is loaded on every page)."""
    minerals = [["Ga", "Ge", "Nd"], ["Dy", "Tb"], ["Co", "Li", "Mn", "Ni"]]
    start = clock.now() - timedelta(days=1)
    async with db.unit_of_work() as session:
        for i in range(n):
            at = start + timedelta(minutes=i)
            incident = new_incident(
                9000 + i,
                reporter,
                at,
                doe_owner_id=owners[0].id,
                meti_owner_id=owners[1].id,
                resolution_round=1,
                mineral_links=[IncidentMineral(mineral_code=c) for c in minerals[i % 3]],
                participant_links=[
                    IncidentParticipant(user_id=h.id, added_at=at, added_by_id=owners[0].id)
                    for h in helpers[: 1 + i % 3]
                ],
            )
            session.add(incident)
            await session.flush()
            session.add(
                IncidentSignoff(
                    incident_id=incident.id,
                    resolution_round=1,
                    ministry_code="DOE",
                    user_id=owners[0].id,
                    at=at,
                )
            )


async def test_list_query_count_does_not_grow_with_page_size(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    count_queries: Callable[[], QueryCounter],
) -> None:
    reporter = await make_actor("responder", "DOE")
    owners = [await make_actor("lead", "DOE"), await make_actor("lead", "METI")]
    helpers = [await make_actor("responder", m) for m in ("DOE", "METI", "METI")]
    await seed_rich_incidents(db, 60, reporter, owners, helpers)

    viewer = await make_actor("viewer", "METI")
    warm = await client.get("/api/v1/incidents?limit=1", headers=viewer.headers)  # last_used_at
    assert warm.status_code == 200
    counts: dict[int, int] = {}
    statements: dict[int, list[str]] = {}
    for limit in (1, 10, 50):
        counter = count_queries()
        response = await client.get(f"/api/v1/incidents?limit={limit}", headers=viewer.headers)
        counts[limit] = counter.count
        statements[limit] = list(counter.statements or [])
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) == limit and page["next_cursor"]
        for item in page["items"]:
            assert len(item["minerals"]) >= 2 and len(item["participants"]) >= 1, item
            assert item["owners"]["DOE"]["id"] == str(owners[0].id), item
            assert item["owners"]["METI"]["id"] == str(owners[1].id), item
            assert [s["ministry"] for s in item["signoffs"]] == ["DOE"], item
        if limit > 1:
            assert {len(item["participants"]) for item in page["items"]} == {1, 2, 3}
    assert counts[1] == counts[10] == counts[50], statements
    assert counts[50] <= 8, statements[50]


# --- pagination ----------------------------------------------------------------------------

SEVERITIES = (None, "SEV1", "SEV2", "SEV3", "SEV4")
SORTS = {
    "-reported_at": lambda i: (i["reported_at"], uuid.UUID(i["id"])),
    "reported_at": lambda i: (i["reported_at"], uuid.UUID(i["id"])),
    "-updated_at": lambda i: (i["updated_at"], uuid.UUID(i["id"])),
    "updated_at": lambda i: (i["updated_at"], uuid.UUID(i["id"])),
    "key": lambda i: (int(i["key"].removeprefix("RRG-")), uuid.UUID(i["id"])),
    "-key": lambda i: (int(i["key"].removeprefix("RRG-")), uuid.UUID(i["id"])),
    "severity": lambda i: (i["severity"] or "SEV9", uuid.UUID(i["id"])),
    "-severity": lambda i: (i["severity"] or "SEV9", uuid.UUID(i["id"])),
}


async def test_cursor_walk_returns_each_visible_incident_once_in_order(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
) -> None:
    reporters = [await make_actor("responder", "DOE"), await make_actor("responder", "METI")]
    walkers = [await make_actor("viewer", "METI"), await make_actor("admin", "DOE")]
    base = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
    created: list[dict[str, Any]] = []
    probes: list[Probe] = []
    async with db.unit_of_work() as session:
        for n in range(30):
            # Reported and updated in orders unlike the key order, three at a time at the same
            # instant (ties on the sort column are broken by id).
            reporter = reporters[n % 2]
            incident = new_incident(
                1 + n,
                reporter,
                base + timedelta(minutes=((n * 11) % 30) // 3),
                updated_at=base + timedelta(hours=1, minutes=((n * 7) % 30) // 3),
                tlp=TLPS[n % 5],
                severity=SEVERITIES[(n * 7 // 3) % 5],
            )
            session.add(incident)
            await session.flush()
            created.append(
                {
                    "id": str(incident.id),
                    "key": incident.key,
                    "reported_at": incident.reported_at,
                    "updated_at": incident.updated_at,
                    "severity": incident.severity,
                }
            )
            probes.append(
                Probe(
                    str(incident.id),
                    incident.key,
                    incident.tlp,
                    reporter.user.ministry.code,
                    {reporter.id},
                )
            )
    assert len({b["reported_at"] for b in created}) == len({b["updated_at"] for b in created}) == 10
    assert len({b["severity"] for b in created}) == 5

    for walker in walkers:
        visible_ids = {p.id for p in probes if may_see(walker, p)}
        assert 10 < len(visible_ids) < 30  # some hidden, so visibility meets pagination
        visible = [b for b in created if b["id"] in visible_ids]
        for sort, sort_key in SORTS.items():
            expected = [
                b["key"] for b in sorted(visible, key=sort_key, reverse=sort.startswith("-"))
            ]
            walked: list[str] = []
            cursor: str | None = None
            for _ in range(10):
                params: dict[str, Any] = {"sort": sort, "limit": 7}
                if cursor:
                    params["cursor"] = cursor
                response = await client.get(
                    "/api/v1/incidents", params=params, headers=walker.headers
                )
                assert response.status_code == 200, response.text
                page = response.json()
                cursor = page["next_cursor"]
                assert len(page["items"]) == 7 if cursor else 0 < len(page["items"]) <= 7
                walked += [item["key"] for item in page["items"]]
                if not cursor:
                    break
            assert cursor is None, f"{sort}: the walk did not end"
            assert walked == expected, f"{who(walker)}, sort={sort}"


async def test_named_partner_sees_an_amber_incident_it_is_on(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    await add_partner(db)
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    partner = await make_actor("viewer", PARTNER)
    amber = await create(client, reporter, tlp="AMBER")
    url = f"/api/v1/incidents/{amber['id']}"
    assert_problem(await client.get(url, headers=partner.headers), 404)
    added = await client.post(
        f"{url}/participants", json={"user_id": str(partner.id)}, headers=lead.headers
    )
    assert added.status_code == 200, added.text
    assert (await client.get(url, headers=partner.headers)).status_code == 200
    assert amber["key"] in await list_keys(client, partner)


async def test_a_responders_red_report_can_be_brought_to_triage(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    red = await create(client, reporter, tlp="RED")
    url = f"/api/v1/incidents/{red['id']}"
    assert_problem(await client.get(url, headers=lead.headers), 404)
    # The reporter names a lead, who can then see and triage it.
    added = await client.post(
        f"{url}/participants", json={"user_id": str(lead.id)}, headers=reporter.headers
    )
    assert added.status_code == 200, added.text
    assert (await client.get(url, headers=lead.headers)).status_code == 200
    assert (await assign(client, lead, red, "DOE", lead)).status_code == 200
    # A viewer who is not the reporter still may not add people.
    viewer = await make_actor("viewer", "DOE")
    assert_problem(
        await client.post(
            f"{url}/participants", json={"user_id": str(viewer.id)}, headers=viewer.headers
        ),
        404,
    )


async def test_a_change_that_would_hide_the_incident_from_its_maker_is_422_and_changes_nothing(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "METI")
    incident = await create(client, reporter, tlp="AMBER")
    url = f"/api/v1/incidents/{incident['id']}"
    before = await client.get(url, headers=lead.headers)
    assert before.status_code == 200, before.text
    timeline = (await client.get(f"{url}/timeline", headers=lead.headers)).json()["items"]

    # Not named on it, the lead would lose sight of it on RED: refused with the field.
    red = await client.patch(
        url, json={"tlp": "RED"}, headers={**lead.headers, "If-Match": before.headers["etag"]}
    )
    problem = assert_problem(red, 422)
    assert problem["errors"][0]["field"] == "tlp"
    assert "no longer see" in problem["errors"][0]["reason"]
    after = await client.get(url, headers=lead.headers)
    assert after.json()["tlp"] == "AMBER" and after.headers["etag"] == before.headers["etag"]
    assert (await client.get(f"{url}/timeline", headers=lead.headers)).json()["items"] == timeline

    # Once named (here as the METI owner), the same change goes through.
    assert (await assign(client, lead, incident, "METI", lead)).status_code == 200
    current = await client.get(url, headers=lead.headers)
    red = await client.patch(
        url, json={"tlp": "RED"}, headers={**lead.headers, "If-Match": current.headers["etag"]}
    )
    assert red.status_code == 200 and red.json()["tlp"] == "RED", red.text

    # An owner who hands the RED incident to someone else would lose sight of it too.
    other = await make_actor("responder", "METI")
    added = await client.post(
        f"{url}/participants", json={"user_id": str(other.id)}, headers=lead.headers
    )
    assert added.status_code == 200, added.text
    handed = await assign(client, lead, incident, "METI", other)
    assert assert_problem(handed, 422)["errors"][0]["field"] == "user_id"
    assert (await client.get(url, headers=lead.headers)).json()["owners"]["METI"]["id"] == str(
        lead.id
    )
