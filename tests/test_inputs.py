"""Hostile input gets a 422 problem naming the field, and changes nothing.

Every case here answered 500 (or was silently stored) before: naive times, offsets that
carry a time past year 1 or 9999, NaN and infinities, integers too large for 64 bits or
for their column, NUL characters and invalid Unicode in text, path and query, unknown
fields nested inside objects.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import Actor, MakeActor, assert_problem
from tests.incidents.helpers import create, report

BAD_TIMES: list[tuple[str, Any]] = [
    ("naive", "2026-12-01T09:00:00"),
    ("UTC past year 9999", "9999-12-31T23:00:00-05:00"),
    ("UTC before year 1", "0001-01-01T00:00:00+05:00"),
    ("after the range", "2100-01-01T00:00:00Z"),
    ("before the range", "1899-12-31T23:59:59Z"),
    ("epoch seconds", 1_796_000_000),
    ("a date alone", "2026-12-01"),
    ("an offset beyond a day", "2026-12-01T09:00:00+24:00"),
]


def field_errors(response: httpx.Response, status: int = 422) -> set[tuple[str, str]]:
    body = assert_problem(response, status)
    return {(e["location"], e["field"]) for e in body["errors"]}


async def count_incidents(client: httpx.AsyncClient, actor: Actor) -> int:
    response = await client.get("/api/v1/incidents", params={"limit": 200}, headers=actor.headers)
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


# --- times --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("effective_at", lambda t: report(effective_at=t)),
        (
            "sources.0.published_at",
            lambda t: report(
                sources=[{"title": "MOFCOM", "url": "https://example.org/n", "published_at": t}]
            ),
        ),
    ],
)
async def test_incident_times_must_be_aware_and_in_range(
    client: httpx.AsyncClient, make_actor: MakeActor, field: str, body: Any
):
    reporter = await make_actor("responder")
    for label, value in BAD_TIMES:
        response = await client.post(
            "/api/v1/incidents", json=body(value), headers=reporter.headers
        )
        assert field_errors(response) == {("body", field)}, (label, response.text)
    assert await count_incidents(client, reporter) == 0


async def test_action_due_and_token_expiry_must_be_aware_and_in_range(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead")
    incident = await create(client, lead)
    for label, value in BAD_TIMES:
        action = await client.post(
            f"/api/v1/incidents/{incident['id']}/actions",
            json={"title": "Release", "kind": "other", "owning_ministry": "DOE", "due_at": value},
            headers=lead.headers,
        )
        assert field_errors(action) == {("body", "due_at")}, (label, action.text)
        token = await client.post(
            "/api/v1/tokens", json={"name": "feed", "expires_at": value}, headers=lead.headers
        )
        assert field_errors(token) == {("body", "expires_at")}, (label, token.text)
    actions = await client.get(f"/api/v1/incidents/{incident['id']}/actions", headers=lead.headers)
    assert actions.json()["items"] == []
    tokens = await client.get("/api/v1/tokens", headers=lead.headers)
    assert len(tokens.json()["items"]) == 1  # only the one the test started with


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/incidents", "reported_after"),
        ("/api/v1/incidents", "reported_before"),
        ("/api/v1/actions", "due_before"),
    ],
)
async def test_time_filters_must_be_aware_and_in_range(
    client: httpx.AsyncClient, make_actor: MakeActor, path: str, name: str
):
    viewer = await make_actor("viewer")
    for label, value in BAD_TIMES:
        response = await client.get(path, params={name: str(value)}, headers=viewer.headers)
        assert field_errors(response) == {("query", name)}, (label, response.text)


async def test_an_aware_time_with_any_offset_is_taken_and_returned_in_utc(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder")
    incident = await create(client, reporter, effective_at="2026-12-01T18:00:00+09:00")
    assert incident["effective_at"] == "2026-12-01T09:00:00Z"
    found = await client.get(
        "/api/v1/incidents",
        params={"reported_after": "1900-01-01T00:00:00+09:00"},
        headers=reporter.headers,
    )
    assert [i["id"] for i in found.json()["items"]] == [incident["id"]]


# --- numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["estimated_shortfall_tonnes_per_month", "supply_share_affected_pct", "price_change_pct"],
)
async def test_nan_and_infinities_are_refused(
    client: httpx.AsyncClient, make_actor: MakeActor, field: str
):
    reporter = await make_actor("responder")
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        # Python's json module reads these literals; the body is sent as written.
        raw = json.dumps(report())[:-1] + f', "{field}": {literal}}}'
        response = await client.post(
            "/api/v1/incidents",
            content=raw,
            headers={**reporter.headers, "content-type": "application/json"},
        )
        assert field_errors(response) == {("body", field)}, (literal, response.text)
    assert await count_incidents(client, reporter) == 0


async def test_integers_beyond_64_bits_or_their_column_are_refused(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder")
    refused = [
        ({"expected_duration_days": 2**64}, "expected_duration_days"),
        ({"expected_duration_days": 2**31}, "expected_duration_days"),  # an INTEGER column
        ({"days_of_cover": {"US": 2**63}}, "days_of_cover.US"),
        ({"expected_duration_days": -(2**70)}, "expected_duration_days"),
    ]
    for overrides, field in refused:
        response = await client.post(
            "/api/v1/incidents", json=report(**overrides), headers=reporter.headers
        )
        assert field_errors(response) == {("body", field)}, response.text
    assert await count_incidents(client, reporter) == 0
    largest = await create(client, reporter, expected_duration_days=2**31 - 1)
    assert largest["expected_duration_days"] == 2**31 - 1


# --- text ---------------------------------------------------------------------------


async def test_nul_characters_in_any_body_text_are_refused(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin")
    incident = await create(client, admin)
    base = f"/api/v1/incidents/{incident['id']}"
    refused = [
        ("/api/v1/incidents", report(title="Gallium\x00"), "title"),
        ("/api/v1/incidents", report(summary="a\x00b"), "summary"),
        ("/api/v1/incidents", report(minerals=["Ga\x00"]), "minerals"),
        (
            "/api/v1/incidents",
            report(sources=[{"title": "a\x00", "url": "https://example.org"}]),
            "sources.0.title",
        ),
        (f"{base}/comments", {"body": "hello\x00"}, "body"),
        (
            f"{base}/actions",
            {"title": "x\x00", "kind": "other", "owning_ministry": "DOE"},
            "title",
        ),
        (f"{base}/transitions", {"to": "rejected", "reason": "dup\x00"}, "reason"),
        ("/api/v1/tokens", {"name": "feed\x00"}, "name"),
        (
            "/api/v1/users",
            {"email": "n@doe.example.org", "display_name": "N\x00", "ministry": "DOE"},
            "display_name",
        ),
    ]
    for path, body, field in refused:
        response = await client.post(path, json=body, headers={**admin.headers, "If-Match": '"1"'})
        assert field_errors(response) == {("body", field)}, (path, response.text)
    timeline = await client.get(f"{base}/timeline", headers=admin.headers)
    assert [e["type"] for e in timeline.json()["items"]] == ["incident.created"]
    assert await count_incidents(client, admin) == 1


async def test_invalid_unicode_in_text_is_refused(client: httpx.AsyncClient, make_actor: MakeActor):
    reporter = await make_actor("responder")
    raw = json.dumps(report()).replace('"Gallium export', '"\\ud800 export')
    response = await client.post(
        "/api/v1/incidents",
        content=raw,
        headers={**reporter.headers, "content-type": "application/json"},
    )
    assert field_errors(response) == {("body", "title")}
    assert await count_incidents(client, reporter) == 0


@pytest.mark.parametrize(
    ("path", "location", "name"),
    [
        ("/api/v1/incidents?q=gal%00lium", "query", "q"),
        ("/api/v1/incidents?ministry=DOE%00", "query", "ministry"),
        ("/api/v1/incidents?mineral=Ga%00", "query", "mineral"),
        ("/api/v1/actions?incident=RRG-0001%00", "query", "incident"),
        ("/api/v1/incidents/RRG-0001%00", "path", "id_or_key"),
        ("/api/v1/incidents/RRG-0001%00/timeline", "path", "id_or_key"),
    ],
)
async def test_nul_in_path_or_query_is_refused_before_any_query_runs(
    client: httpx.AsyncClient, make_actor: MakeActor, path: str, location: str, name: str
):
    viewer = await make_actor("viewer")
    assert field_errors(await client.get(path, headers=viewer.headers)) == {(location, name)}


# --- objects ------------------------------------------------------------------------


async def test_unknown_fields_nested_in_objects_are_refused(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder")
    source = {"title": "MOFCOM", "url": "https://example.org/n", "language": "zh"}
    response = await client.post(
        "/api/v1/incidents", json=report(sources=[source]), headers=reporter.headers
    )
    body = assert_problem(response, 422)
    assert body["errors"] == [
        {"location": "body", "field": "sources.0.language", "reason": "unknown field"}
    ]
    assert await count_incidents(client, reporter) == 0


async def test_fields_that_may_not_be_cleared_refuse_null_by_name(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead")
    incident = await create(client, lead)
    response = await client.patch(
        f"/api/v1/incidents/{incident['id']}",
        json={"title": None, "summary": None, "severity": None},
        headers={**lead.headers, "If-Match": '"1"'},
    )
    assert field_errors(response) == {("body", "title"), ("body", "summary")}
    current = await client.get(f"/api/v1/incidents/{incident['id']}", headers=lead.headers)
    assert current.json()["title"] == incident["title"] and current.json()["version"] == 1
