"""If-Match (SPEC §8, RFC 9110 §13.1.1): strong comparison, `*`, lists; never a 500."""

from __future__ import annotations

import httpx
import pytest

from app.deps import parse_if_match
from tests.conftest import MakeActor, assert_problem
from tests.incidents.helpers import create

NINES = '"' + "9" * 5000 + '"'


@pytest.mark.parametrize(
    ("header", "version", "matches"),
    [
        ('"3"', 3, True),
        ('W/"3"', 3, False),
        ("*", 3, True),
        ('"1", "3"', 3, True),
        ('"1",W/"3"', 3, False),
        ('W/"3", "3"', 3, True),
        ('"03"', 3, False),
        ('"\u0663"', 3, False),  # ARABIC-INDIC DIGIT THREE
        (NINES, 3, False),
        ("3", 3, False),  # not an entity tag
        ('"3" junk', 3, False),
        ('"3', 3, False),
        (",,", 3, False),
    ],
)
def test_if_match_compares_strong_tags_as_text(header: str, version: int, matches: bool):
    precondition = parse_if_match(header)
    assert precondition is not None
    assert precondition.matches(version) is matches
    assert precondition.expected(version) == (version if matches else 0)


def test_a_blank_if_match_is_no_precondition():
    assert parse_if_match(None) is None and parse_if_match("  ") is None


async def test_required_if_match_takes_star_and_lists_but_never_weak_tags(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead")
    incident = await create(client, lead)
    url = f"/api/v1/incidents/{incident['id']}"

    async def patch(title: str, if_match: bytes | None) -> httpx.Response:
        headers = {**lead.headers, **({"If-Match": if_match} if if_match is not None else {})}
        return await client.patch(url, json={"title": title}, headers=headers)

    for refused in (b'W/"1"', b'"2", W/"1"', '"\u0661"'.encode(), NINES.encode(), b"1", b"x"):
        body = assert_problem(await patch("Refused", refused), 412)
        assert body["type"] == "urn:rrg:problem:precondition-failed"
    assert_problem(await patch("Refused", None), 428)
    assert_problem(await patch("Refused", b""), 428)

    by_list = await patch("By list", b'"7", "1"')
    assert by_list.status_code == 200 and by_list.headers["etag"] == '"2"'
    by_star = await patch("By star", b"*")
    assert by_star.status_code == 200 and by_star.headers["etag"] == '"3"'
    current = await client.get(url, headers=lead.headers)
    assert current.json()["title"] == "By star" and current.json()["version"] == 3


async def test_if_match_on_actions_and_optional_preconditions_compare_the_same_way(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead")
    incident = await create(client, lead)
    action = (
        await client.post(
            f"/api/v1/incidents/{incident['id']}/actions",
            json={
                "title": "Release stockpile",
                "kind": "stockpile_release",
                "owning_ministry": "DOE",
            },
            headers=lead.headers,
        )
    ).json()
    action_url = f"/api/v1/actions/{action['id']}"
    weak = {**lead.headers, "If-Match": 'W/"1"'}
    assert_problem(await client.patch(action_url, json={"title": "x"}, headers=weak), 412)
    assert_problem(
        await client.post(f"{action_url}/transitions", json={"to": "cancelled"}, headers=weak),
        412,
    )
    # Optional If-Match (owner assignment): absent is fine, but when given it must match.
    owner_url = f"/api/v1/incidents/{incident['id']}/owners/DOE"
    owner = {"user_id": str(lead.id)}
    assert_problem(await client.put(owner_url, json=owner, headers=weak), 412)
    assert_problem(
        await client.put(owner_url, json=owner, headers={**lead.headers, "If-Match": NINES}),
        412,
    )
    assigned = await client.put(owner_url, json=owner, headers={**lead.headers, "If-Match": "*"})
    assert assigned.status_code == 200 and assigned.json()["owners"]["DOE"]["id"] == str(lead.id)
    renamed = await client.patch(
        action_url, json={"title": "Release now"}, headers={**lead.headers, "If-Match": "*"}
    )
    assert renamed.status_code == 200 and renamed.json()["title"] == "Release now"
