"""Helpers for incident tests: a valid report body and shortcuts through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Actor


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Gallium export licensing tightened",
        "summary": "Exporters now need a licence for **gallium** metal and compounds.",
        "minerals": ["Ga"],
        "category": "export_control",
        "origin_country": "CN",
        "affected_sectors": ["semiconductors", "defense"],
        "supply_share_affected_pct": 98,
        "days_of_cover": {"US": 45, "JP": 60},
        "tlp": "GREEN",
        "sources": [{"title": "MOFCOM notice", "url": "https://example.org/notice"}],
    }
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, actor: Actor, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/incidents", json=report(**overrides), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def move(
    client: httpx.AsyncClient, actor: Actor, incident: dict[str, Any], to: str, **extra: Any
) -> httpx.Response:
    """Transition with the incident's current ETag (fetched first)."""
    current = await client.get(f"/api/v1/incidents/{incident['id']}", headers=actor.headers)
    return await client.post(
        f"/api/v1/incidents/{incident['id']}/transitions",
        json={"to": to, **extra},
        headers={**actor.headers, "If-Match": current.headers["etag"]},
    )


async def assign(
    client: httpx.AsyncClient, actor: Actor, incident: dict[str, Any], ministry: str, owner: Actor
) -> httpx.Response:
    return await client.put(
        f"/api/v1/incidents/{incident['id']}/owners/{ministry}",
        json={"user_id": str(owner.id)},
        headers=actor.headers,
    )
