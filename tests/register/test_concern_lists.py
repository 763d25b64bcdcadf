"""Countries of concern: each co-lead ministry keeps its own list; every change recorded."""

from __future__ import annotations

import pytest

from tests.conftest import MakeActor, assert_problem

URL = "/api/v1/countries-of-concern"


async def test_a_list_starts_empty_and_every_change_is_recorded(client, make_actor: MakeActor):
    lead, viewer = await make_actor("lead", "METI"), await make_actor("viewer", "DOE")
    start = await client.get(f"{URL}/METI", headers=viewer.headers)
    assert start.status_code == 200
    assert (start.json()["countries"], start.json()["version"], start.headers["etag"]) == (
        [],
        0,
        '"0"',
    )
    first = await client.put(
        f"{URL}/METI",
        json={"countries": ["RU", "CN", "CN"]},
        headers={**lead.headers, "If-Match": '"0"'},
    )
    assert first.status_code == 200, first.text
    assert (first.json()["countries"], first.headers["etag"]) == (["CN", "RU"], '"1"')
    second = await client.put(
        f"{URL}/METI", json={"countries": ["CN", "KP"]}, headers={**lead.headers, "If-Match": '"1"'}
    )
    assert second.json()["version"] == 2
    changes = (await client.get(f"{URL}/METI/changes", headers=viewer.headers)).json()["items"]
    assert [(c["version"], c["added"], c["removed"], c["countries"]) for c in changes] == [
        (2, ["KP"], ["RU"], ["CN", "KP"]),
        (1, ["CN", "RU"], [], ["CN", "RU"]),
    ]
    assert {c["changed_by"]["id"] for c in changes} == {str(lead.id)}
    both = (await client.get(URL, headers=viewer.headers)).json()["items"]
    assert [(b["ministry"], b["country"], b["countries"]) for b in both] == [
        ("DOE", "US", []),
        ("METI", "JP", ["CN", "KP"]),
    ]


@pytest.mark.parametrize(
    ("ministry", "role", "target", "status"),
    [
        ("DOE", "lead", "DOE", 200),
        ("DOE", "admin", "DOE", 200),
        ("METI", "lead", "DOE", 403),
        ("DOE", "responder", "DOE", 403),
        ("DOE", "lead", "METI", 403),
    ],
)
async def test_only_the_ministrys_leads_change_its_list(
    client, make_actor: MakeActor, ministry, role, target, status
):
    actor = await make_actor(role, ministry)
    response = await client.put(
        f"{URL}/{target}", json={"countries": ["CN"]}, headers={**actor.headers, "If-Match": "*"}
    )
    assert response.status_code == status, response.text
    listed = (await client.get(f"{URL}/{target}", headers=actor.headers)).json()["countries"]
    assert listed == (["CN"] if status == 200 else [])


async def test_bad_requests_change_nothing(client, make_actor: MakeActor):
    lead = await make_actor("lead", "DOE")
    unknown = await client.put(
        f"{URL}/DOE", json={"countries": ["CN", "XX"]}, headers={**lead.headers, "If-Match": '"0"'}
    )
    # The unknown code is named by its position in the list.
    assert [e["field"] for e in assert_problem(unknown, 422)["errors"]] == ["countries.1"]
    assert_problem(
        await client.put(f"{URL}/DOE", json={"countries": []}, headers=lead.headers), 428
    )
    stale = await client.put(
        f"{URL}/DOE", json={"countries": ["CN"]}, headers={**lead.headers, "If-Match": '"3"'}
    )
    assert_problem(stale, 412)
    assert_problem(await client.get(f"{URL}/JOGMEC", headers=lead.headers), 404)
    current = (await client.get(f"{URL}/DOE", headers=lead.headers)).json()
    assert (current["countries"], current["version"]) == ([], 0)
    assert (await client.get(f"{URL}/DOE/changes", headers=lead.headers)).json()["items"] == []
