"""An incident's actions (GET /api/v1/incidents/{id}/actions): oldest first, cursor-paginated,
in a number of queries that does not grow with the page."""

from __future__ import annotations

from typing import Any

import httpx

from tests.actions.helpers import propose
from tests.conftest import MakeActor, QueryCounter, assert_problem
from tests.incidents.helpers import create


async def test_incident_actions_page_oldest_first_in_a_fixed_number_of_queries(
    client: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    lead, meti_lead = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    incident = await create(client, lead, tlp="AMBER")
    other = await create(client, lead)
    made = [
        await propose(
            client,
            lead if n % 2 else meti_lead,
            incident,
            title=f"Action {n}",
            owning_ministry=("DOE", "METI", "JOINT")[n % 3],
        )
        for n in range(7)
    ]
    await propose(client, lead, other, title="Elsewhere")
    url = f"/api/v1/incidents/{incident['key']}/actions"
    await client.get("/api/v1/me", headers=meti_lead.headers)  # last_used_at is fresh
    seen: list[str] = []
    counts: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        counter: QueryCounter = count_queries()
        page = await client.get(url, params=params, headers=meti_lead.headers)
        counts.append(len(counter.queries))
        assert page.status_code == 200, page.text
        seen += [a["id"] for a in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["id"] for a in made]
    # The caller, the incident (visibility), the page with its people joined, the approvals.
    assert counts == [4, 4, 4], counts
    for limit in (1, 50):
        counter = count_queries()
        page = await client.get(url, params={"limit": limit}, headers=meti_lead.headers)
        assert len(page.json()["items"]) == min(limit, 7)
        assert len(counter.queries) == 4, counter.queries


async def test_incident_actions_of_an_unseen_incident_are_404(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder", "DOE")
    outsider = await make_actor("lead", "METI")
    red = await create(client, reporter, tlp="RED")
    await propose(client, reporter, red)
    url = f"/api/v1/incidents/{red['id']}/actions"
    assert (await client.get(url, headers=reporter.headers)).json()["items"]
    assert_problem(await client.get(url, headers=outsider.headers), 404)
    assert_problem(await client.get(url, params={"cursor": "x"}, headers=outsider.headers), 404)
