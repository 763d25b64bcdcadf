"""Dependency profiles through the API: versions and history, preconditions, who may
write which country's profile, and bad input refused with the field named."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MakeActor, assert_problem
from tests.register.helpers import (
    profile_body,
    profile_url,
    put_profile,
    set_concern,
    set_profile,
)


async def _versions(client, actor, mineral="Ga", country="US") -> list[int]:
    response = await client.get(f"{profile_url(mineral, country)}/versions", headers=actor.headers)
    assert response.status_code == 200, response.text
    return [p["version"] for p in response.json()["items"]]


async def test_put_creates_then_versions_and_keeps_history(client, make_actor: MakeActor):
    lead = await make_actor("lead", "DOE")
    created = await put_profile(client, lead)
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    first = created.json()
    assert (first["version"], first["current"], first["ministry"]) == (1, True, "DOE")
    assert first["recorded_by"]["id"] == str(lead.id)

    second = await put_profile(client, lead, etag='"1"', days_of_cover=12, as_of="2026-11-01")
    assert second.status_code == 200, second.text
    assert second.headers["etag"] == '"2"'
    assert second.json()["days_of_cover"] == 12

    current = await client.get(profile_url(), headers=lead.headers)
    assert current.status_code == 200
    assert (current.json()["version"], current.headers["etag"]) == (2, '"2"')
    history = await client.get(f"{profile_url()}/versions", headers=lead.headers)
    items = history.json()["items"]
    assert [(p["version"], p["current"], p["days_of_cover"]) for p in items] == [
        (2, True, 12),
        (1, False, 40),
    ]
    paged = await client.get(f"{profile_url()}/versions", params={"limit": 1}, headers=lead.headers)
    assert [p["version"] for p in paged.json()["items"]] == [2]
    rest = await client.get(
        f"{profile_url()}/versions",
        params={"limit": 1, "cursor": paged.json()["next_cursor"]},
        headers=lead.headers,
    )
    assert [p["version"] for p in rest.json()["items"]] == [1]
    assert rest.json()["next_cursor"] is None

    viewer = await make_actor("viewer", "METI")
    overview = await client.get("/api/v1/minerals/Ga/profiles", headers=viewer.headers)
    assert overview.status_code == 200
    by_country = {c["country"]: c for c in overview.json()["countries"]}
    assert by_country["US"]["current"]["version"] == 2
    assert by_country["US"]["versions"] == 2
    assert (by_country["JP"]["current"], by_country["JP"]["ministry"]) == (None, "METI")


async def test_preconditions_428_412_and_star(client, make_actor: MakeActor):
    lead = await make_actor("lead", "DOE")
    missing = await client.put(profile_url(), json=profile_body(), headers=lead.headers)
    assert_problem(missing, 428)
    nothing_to_match = await put_profile(client, lead, etag='"1"')
    assert_problem(nothing_to_match, 412)
    assert (await put_profile(client, lead)).status_code == 201
    again = await put_profile(client, lead)  # If-None-Match: * but it exists now
    assert_problem(again, 412)
    stale = await put_profile(client, lead, etag='"7"')
    assert_problem(stale, 412)
    weak = await put_profile(client, lead, etag='W/"1"')
    assert_problem(weak, 412)  # strong comparison
    star = await put_profile(client, lead, etag="*", days_of_cover=1)
    assert star.status_code == 200, star.text
    assert await _versions(client, lead) == [2, 1]


@pytest.mark.parametrize(
    ("ministry", "role", "country", "allowed"),
    [
        ("DOE", "lead", "US", True),
        ("DOE", "admin", "US", True),
        ("METI", "lead", "JP", True),
        ("METI", "lead", "US", False),
        ("DOE", "lead", "JP", False),
        ("DOE", "responder", "US", False),
        ("METI", "admin", "US", False),
    ],
)
async def test_only_leads_of_the_countrys_ministry_write_its_profile(
    client, make_actor: MakeActor, ministry, role, country, allowed
):
    actor = await make_actor(role, ministry)
    response = await put_profile(client, actor, "Ga", country)
    if allowed:
        assert response.status_code == 201, response.text
        assert await _versions(client, actor, "Ga", country) == [1]
    else:
        assert_problem(response, 403)
        assert await _versions(client, actor, "Ga", country) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"net_import_reliance_pct": 100.5}, "net_import_reliance_pct"),
        ({"net_import_reliance_pct": -1}, "net_import_reliance_pct"),
        (
            {
                "suppliers": [
                    {"country": "CN", "share_pct": 70},
                    {"country": "AU", "share_pct": 40},
                ]
            },
            "suppliers",
        ),
        ({"suppliers": [{"country": "CN", "share_pct": 101}]}, "suppliers.0.share_pct"),
        ({"suppliers": [{"country": "XX", "share_pct": 10}]}, "suppliers.0.country"),
        (
            {
                "suppliers": [
                    {"country": "CN", "share_pct": 10},
                    {"country": "CN", "share_pct": 10},
                ]
            },
            "suppliers",
        ),
        ({"consumption_tonnes_per_year": -5}, "consumption_tonnes_per_year"),
        ({"stockpile_tonnes": -0.1}, "stockpile_tonnes"),
        ({"allied_capacity_tonnes_per_year": -1}, "allied_capacity_tonnes_per_year"),
        ({"days_of_cover": -1}, "days_of_cover"),
        ({"sectors": ["defence"]}, "sectors.0"),
        ({"as_of": "2026-13-01"}, "as_of"),
        ({"as_of": 1700000000}, "as_of"),
        ({"as_of": "1850-01-01"}, "as_of"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    client, make_actor: MakeActor, overrides, field
):
    lead = await make_actor("lead", "DOE")
    response = await put_profile(client, lead, **overrides)
    body = assert_problem(response, 422)
    assert field in [e["field"] for e in body["errors"]], body
    assert await _versions(client, lead) == []


async def test_nan_and_infinity_are_refused(client, make_actor: MakeActor):
    lead = await make_actor("lead", "DOE")
    for token in ("NaN", "Infinity"):
        raw = json.dumps(profile_body()).replace('"days_of_cover": 40', f'"days_of_cover": {token}')
        response = await client.put(
            profile_url(),
            content=raw,
            headers={**lead.headers, "If-None-Match": "*", "Content-Type": "application/json"},
        )
        body = assert_problem(response, 422)
        assert "days_of_cover" in [e["field"] for e in body["errors"]]
    assert await _versions(client, lead) == []


@pytest.mark.parametrize(
    ("mineral", "country", "field"),
    [("Unobtainium", "US", "mineral"), ("Ga", "DE", "country"), ("Ga", "ZZ", "country")],
)
async def test_unknown_mineral_or_country_in_the_path_is_422(
    client, make_actor: MakeActor, mineral, country, field
):
    lead = await make_actor("lead", "DOE")
    body = assert_problem(await put_profile(client, lead, mineral, country), 422)
    assert [e["field"] for e in body["errors"]] == [field]


async def test_unknown_mineral_reads_are_404(client, make_actor: MakeActor):
    viewer = await make_actor("viewer", "DOE")
    assert_problem(await client.get("/api/v1/minerals/XX/profiles", headers=viewer.headers), 404)
    assert_problem(await client.get(profile_url("Ga", "US"), headers=viewer.headers), 404)


async def test_concern_share_is_derived_from_the_ministrys_list(client, make_actor: MakeActor):
    doe, meti = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    await set_profile(client, doe, "Ga", "US")  # CN 54, JP 12, DE 10; reliance 100
    await set_profile(
        client,
        meti,
        "Ga",
        "JP",
        net_import_reliance_pct=50,
        suppliers=[{"country": "CN", "share_pct": 70}, {"country": "RU", "share_pct": 20}],
    )
    await set_concern(client, doe, "DOE", ["CN", "RU"])
    await set_concern(client, meti, "METI", ["RU"])
    overview = (await client.get("/api/v1/minerals/Ga/profiles", headers=doe.headers)).json()
    us, jp = (c["current"] for c in overview["countries"])
    assert (us["concern_share_pct"], us["concern_dependence_pct"]) == (54, 54)
    assert [s["of_concern"] for s in us["suppliers"]] == [True, False, False]
    # Japan is judged by METI's list only: RU, not CN.
    assert (jp["concern_share_pct"], jp["concern_dependence_pct"]) == (20, 10)
