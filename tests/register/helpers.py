"""Helpers for register tests: a valid profile body, CSV rows, and shortcuts through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Actor

Json = dict[str, Any]


def profile_body(**overrides: Any) -> Json:
    body: Json = {
        "as_of": "2026-10-01",
        "net_import_reliance_pct": 100,
        "consumption_tonnes_per_year": 20,
        "suppliers": [
            {"country": "CN", "share_pct": 54},
            {"country": "JP", "share_pct": 12},
            {"country": "DE", "share_pct": 10},
        ],
        "domestic_capacity_tonnes_per_year": 0,
        "allied_capacity_tonnes_per_year": 30,
        "stockpile_tonnes": 5,
        "days_of_cover": 40,
        "sectors": ["semiconductors", "defense"],
        "sources": [{"title": "Illustrative", "url": "https://example.org/ga"}],
    }
    body.update(overrides)
    return body


def profile_url(mineral: str = "Ga", country: str = "US") -> str:
    return f"/api/v1/minerals/{mineral}/profiles/{country}"


async def put_profile(
    client: httpx.AsyncClient,
    actor: Actor,
    mineral: str = "Ga",
    country: str = "US",
    *,
    etag: str | None = None,
    **overrides: Any,
) -> httpx.Response:
    """PUT a profile: with If-Match when ``etag`` is given, else If-None-Match: * (create)."""
    precondition = {"If-Match": etag} if etag else {"If-None-Match": "*"}
    return await client.put(
        profile_url(mineral, country),
        json=profile_body(**overrides),
        headers={**actor.headers, **precondition},
    )


async def set_profile(
    client: httpx.AsyncClient, actor: Actor, mineral: str = "Ga", country: str = "US", **kw: Any
) -> Json:
    """Record a new version whether or not one exists (reads the current ETag first)."""
    current = await client.get(profile_url(mineral, country), headers=actor.headers)
    etag = current.headers["etag"] if current.status_code == 200 else None
    response = await put_profile(client, actor, mineral, country, etag=etag, **kw)
    assert response.status_code in (200, 201), response.text
    body: Json = response.json()
    return body


async def set_concern(
    client: httpx.AsyncClient, actor: Actor, ministry: str, countries: list[str]
) -> Json:
    url = f"/api/v1/countries-of-concern/{ministry}"
    etag = (await client.get(url, headers=actor.headers)).headers["etag"]
    response = await client.put(
        url, json={"countries": countries}, headers={**actor.headers, "If-Match": etag}
    )
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


HEADER = (
    "mineral,country,as_of,net_import_reliance_pct,consumption_tonnes_per_year,suppliers,"
    "domestic_capacity_tonnes_per_year,allied_capacity_tonnes_per_year,stockpile_tonnes,"
    "days_of_cover,sectors,source_title,source_url,illustrative,note"
)


def csv_row(
    mineral: str = "Ga",
    country: str = "US",
    *,
    as_of: str = "2026-10-01",
    reliance: str = "100",
    consumption: str = "20",
    suppliers: str = "CN:54;JP:12",
    domestic: str = "0",
    allied: str = "30",
    stockpile: str = "5",
    days: str = "40",
    sectors: str = "semiconductors;defense",
    source_title: str = "Survey",
    source_url: str = "https://example.org/survey",
    illustrative: str = "false",
    note: str = "",
) -> str:
    return ",".join(
        [
            mineral,
            country,
            as_of,
            reliance,
            consumption,
            suppliers,
            domestic,
            allied,
            stockpile,
            days,
            sectors,
            source_title,
            source_url,
            illustrative,
            note,
        ]
    )


def csv_file(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


async def post_csv(
    client: httpx.AsyncClient, actor: Actor, text: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/imports/profiles",
        content=text.encode(),
        headers={**actor.headers, "Content-Type": "text/csv", **headers},
    )
