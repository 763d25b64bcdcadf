"""Statement budgets of the hot paths: a create, a transition and the incident list each
send a fixed number of SQL statements, whatever the data. A change that adds a round trip
(a reload, a repeated visibility check, a per-row query) fails here; lower a budget when a
statement goes away, never raise it without a reason."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import MakeActor
from tests.incidents.helpers import assign, create, report

# On PostgreSQL a write's NOTIFY (app.signals) rides in its writes' statement: no statement
# of its own, but exactly one statement carries it.
NOTIFIES = {"sqlite": 0, "postgresql": 1}
# Token lookup, key counter with the minerals check and the duplicate hint, the writes. The
# writes are the incident (its priority and timeline head included), its minerals, timeline
# event and outbox event: one statement on PostgreSQL. The priority's inputs and the webhook
# subscriptions come from the process caches (app.caches), as in a server (``listening``).
WRITES = {"sqlite": 4, "postgresql": 1}
CREATE = {backend: 2 + writes for backend, writes in WRITES.items()}
# Token lookup, incident (locked, so its timeline head is current) with its minerals and
# participants joined, action counts, the versioned update (the timeline head included),
# the writes (timeline event and outbox event: one statement on PostgreSQL), the people named.
TRANSITION = {backend: 5 + writes for backend, writes in {"sqlite": 2, "postgresql": 1}.items()}
# Token lookup, the page, minerals, participants, the people named: whatever the page holds.
LIST = 5


async def _fresh_token(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Use the token once, so its last-used time is fresh and not written again."""
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200


async def test_a_create_sends_a_fixed_number_of_statements(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    count_queries: Any,
    backend: str,
    listening: None,
):
    reporter = await make_actor("responder")
    await create(client, reporter)  # a possible duplicate exists, so the hint finds one
    await _fresh_token(client, reporter.headers)
    counter = count_queries()
    response = await client.post(
        "/api/v1/incidents", json=report(minerals=["Ga", "Ge"]), headers=reporter.headers
    )
    assert response.status_code == 201, response.text
    assert [d["key"] for d in response.json()["possible_duplicates"]] == ["RRG-0001"]
    assert len(counter.queries) == CREATE[backend], counter.queries
    assert sum("pg_notify" in q for q in counter.queries) == NOTIFIES[backend]


async def test_a_transition_sends_a_fixed_number_of_statements(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    count_queries: Any,
    backend: str,
    listening: None,
):
    reporter = await make_actor("responder")
    lead = await make_actor("lead")
    await create(client, reporter)  # published: the subscriptions are read and kept
    incident = await create(client, reporter, status="watch")
    await _fresh_token(client, lead.headers)
    counter = count_queries()
    response = await client.post(
        f"/api/v1/incidents/{incident['id']}/transitions",
        json={"to": "reported"},
        headers={**lead.headers, "If-Match": f'"{incident["version"]}"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "reported"
    assert len(counter.queries) == TRANSITION[backend], counter.queries
    assert sum("pg_notify" in q for q in counter.queries) == NOTIFIES[backend]


async def test_the_incident_list_sends_the_same_statements_for_any_page(
    client: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    reporter = await make_actor("responder")
    lead = await make_actor("lead")
    meti = await make_actor("responder", "METI")
    await _fresh_token(client, lead.headers)
    counts = []
    for batch in (1, 6):
        for _ in range(batch):
            incident = await create(client, reporter, minerals=["Ga", "Ge"])
            assert (await assign(client, lead, incident, "METI", meti)).status_code == 200
            added = await client.post(
                f"/api/v1/incidents/{incident['id']}/participants",
                json={"user_id": str(meti.id)},
                headers=lead.headers,
            )
            assert added.status_code == 200, added.text
        counter = count_queries()
        page = await client.get("/api/v1/incidents", params={"limit": 50}, headers=lead.headers)
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert all(i["owners"]["METI"]["id"] == str(meti.id) for i in items)
        assert all([p["id"] for p in i["participants"]] == [str(meti.id)] for i in items)
        counts.append(len(counter.queries))
    assert len(items) == 7
    assert counts == [LIST, LIST], counts
