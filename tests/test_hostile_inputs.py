"""Hostile input against the register, priority, sitrep, vulnerability and webhook
endpoints: NUL characters, numbers beyond 64 bits or beyond a float, NaN, naive or
out-of-range datetimes, forged cursors. Each is a 4xx problem+json naming what was wrong
(never a 500), and changes nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.conftest import MakeActor, assert_problem
from tests.register.helpers import profile_body

NAN_BODY = json.dumps(profile_body()).replace(
    '"net_import_reliance_pct": 100', '"net_import_reliance_pct": NaN'
)
BIG = 2**70


def forged(*values: Any) -> str:
    raw = json.dumps(list(values)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def raw(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


def profile(**overrides: Any) -> dict[str, Any]:
    return {"json": profile_body(**overrides), "headers": {"If-None-Match": "*"}}


def weights(**components: Any) -> dict[str, Any]:
    base = {
        "severity": 30,
        "supply_share": 20,
        "days_of_cover": 15,
        "concern_dependence": 15,
        "sector_criticality": 10,
        "time_to_effect": 10,
    }
    return {"json": {"components": {**base, **components}}, "headers": {"If-Match": '"0"'}}


PROFILE = "/api/v1/minerals/Ga/profiles/US"
WEIGHTS = "/api/v1/priority-weights"
SUBS = "/api/v1/webhooks/subscriptions"
LOG = "/api/v1/webhooks/deliveries"
CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    # (id, method, url, request arguments, field named in the problem)
    (
        "profile NaN",
        "PUT",
        PROFILE,
        {**raw(NAN_BODY), "headers": {"Content-Type": "application/json", "If-None-Match": "*"}},
        "net_import_reliance_pct",
    ),
    (
        "profile 1e400",
        "PUT",
        PROFILE,
        {
            **raw(
                json.dumps(profile_body()).replace(
                    '"stockpile_tonnes": 5', '"stockpile_tonnes": 1e400'
                )
            ),
            "headers": {"Content-Type": "application/json", "If-None-Match": "*"},
        },
        "stockpile_tonnes",
    ),
    (
        "profile huge int",
        "PUT",
        PROFILE,
        profile(consumption_tonnes_per_year=BIG),
        "consumption_tonnes_per_year",
    ),
    ("profile NUL date", "PUT", PROFILE, profile(as_of="2026-10-01\x00"), "as_of"),
    (
        "profile NUL source",
        "PUT",
        PROFILE,
        profile(sources=[{"title": "a\x00b", "url": "https://example.org/"}]),
        "sources.0.title",
    ),
    (
        "profile NUL supplier",
        "PUT",
        PROFILE,
        profile(suppliers=[{"country": "C\x00", "share_pct": 1}]),
        "suppliers.0.country",
    ),
    ("profile NUL sector", "PUT", PROFILE, profile(sectors=["defense\x00"]), "sectors.0"),
    ("profile NUL mineral", "GET", "/api/v1/minerals/G%00a/profiles", {}, "code"),
    (
        "profile versions cursor",
        "GET",
        f"{PROFILE}/versions",
        {"params": {"cursor": forged("x", 1)}},
        "cursor",
    ),
    (
        "concern NUL",
        "PUT",
        "/api/v1/countries-of-concern/DOE",
        {"json": {"countries": ["C\x00"]}, "headers": {"If-Match": '"0"'}},
        "countries.0",
    ),
    (
        "concern huge etag",
        "PUT",
        "/api/v1/countries-of-concern/DOE",
        {"json": {"countries": ["CN"]}, "headers": {"If-Match": '"' + "9" * 5000 + '"'}},
        "",
    ),
    (
        "weights NaN",
        "PUT",
        WEIGHTS,
        raw('{"components": {"severity": NaN}}'),
        "components.severity",
    ),
    (
        "weights Infinity",
        "PUT",
        WEIGHTS,
        raw('{"components": {"severity": Infinity}}'),
        "components.severity",
    ),
    ("weights huge int", "PUT", WEIGHTS, weights(severity=BIG), "components.severity"),
    (
        "weights 1e400",
        "PUT",
        WEIGHTS,
        raw('{"components": {"severity": 1e400}}'),
        "components.severity",
    ),
    (
        "weights cursor float",
        "GET",
        f"{WEIGHTS}/changes",
        {"params": {"cursor": forged("weight_changes", 1.5)}},
        "cursor",
    ),
    (
        "weights cursor huge",
        "GET",
        f"{WEIGHTS}/changes",
        {"params": {"cursor": forged("weight_changes", BIG)}},
        "cursor",
    ),
    (
        "weights cursor object",
        "GET",
        f"{WEIGHTS}/changes",
        {"params": {"cursor": forged("weight_changes", {"a": 1})}},
        "cursor",
    ),
    (
        "weights cursor garbage",
        "GET",
        f"{WEIGHTS}/changes",
        {"params": {"cursor": "!!!"}},
        "cursor",
    ),
    ("sitrep naive", "GET", "/api/v1/sitrep", {"params": {"at": "2026-12-01T09:00:00"}}, "at"),
    (
        "sitrep past 9999",
        "GET",
        "/api/v1/sitrep",
        {"params": {"at": "9999-12-31T23:00:00-05:00"}},
        "at",
    ),
    (
        "sitrep before year 1",
        "GET",
        "/api/v1/sitrep",
        {"params": {"at": "0001-01-01T00:30:00+01:00"}},
        "at",
    ),
    ("sitrep NUL", "GET", "/api/v1/sitrep", {"params": {"at": "2026-12-01T09:00:00Z\x00"}}, "at"),
    ("sitrep lang", "GET", "/api/v1/sitrep", {"params": {"lang": "xx"}}, "lang"),
    ("vulnerabilities by", "GET", "/api/v1/vulnerabilities", {"params": {"by": "CN"}}, "by"),
    (
        "vulnerabilities limit",
        "GET",
        "/api/v1/vulnerabilities",
        {"params": {"limit": str(BIG)}},
        "limit",
    ),
    (
        "subscription NUL url",
        "POST",
        SUBS,
        {"json": {"url": "https://hooks.example.test/\x00"}},
        "url",
    ),
    (
        "subscription NUL description",
        "POST",
        SUBS,
        {"json": {"url": "https://hooks.example.test/", "description": "a\x00"}},
        "description",
    ),
    (
        "subscription nested extra",
        "POST",
        SUBS,
        {"json": {"url": "https://hooks.example.test/", "event_types": [{"x": 1}]}},
        "event_types.0",
    ),
    ("subscription bad id", "GET", f"{SUBS}/not-a-uuid", {}, "subscription_id"),
    (
        "recover naive",
        "POST",
        f"{SUBS}/00000000-0000-4000-8000-000000000000/recover",
        {"json": {"since": "2026-12-01T09:00:00"}},
        "since",
    ),
    ("deliveries naive", "GET", LOG, {"params": {"since": "2026-12-01T09:00:00"}}, "since"),
    (
        "deliveries past 9999",
        "GET",
        LOG,
        {"params": {"until": "9999-12-31T23:59:59-14:00"}},
        "until",
    ),
    (
        "deliveries cursor naive",
        "GET",
        LOG,
        {
            "params": {
                "cursor": forged(
                    "deliveries", "2026-12-01T09:00:00", "00000000-0000-4000-8000-000000000000"
                )
            }
        },
        "cursor",
    ),
    (
        "deliveries cursor null",
        "GET",
        LOG,
        {"params": {"cursor": forged("deliveries", None, None)}},
        "cursor",
    ),
    (
        "incidents priority cursor",
        "GET",
        "/api/v1/incidents",
        {
            "params": {
                "sort": "-priority",
                "cursor": forged(
                    "incidents:-priority", "1", "00000000-0000-4000-8000-000000000000"
                ),
            }
        },
        "cursor",
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "arguments", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_hostile_input_is_a_problem_naming_the_field_never_a_500(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    method: str,
    url: str,
    arguments: dict[str, Any],
    field: str,
):
    admin = await make_actor("admin", "DOE")
    request = dict(arguments)  # the case is shared by both databases' runs: left intact
    headers = {**admin.headers, **request.pop("headers", {})}
    response = await client.request(method, url, headers=headers, **request)
    assert 400 <= response.status_code < 500, response.text
    body = assert_problem(response, response.status_code)
    if field:
        assert field in [e["field"] for e in body.get("errors", [])], body
