"""What several auth tests do the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import Actor


async def hour_long_token(
    client: httpx.AsyncClient, actor: Actor
) -> tuple[dict[str, str], datetime]:
    """Headers with a new token of ``actor``'s that expires an hour from now, and when."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    created = await client.post(
        "/api/v1/tokens",
        json={"name": "short", "expires_at": expires.isoformat()},
        headers=actor.headers,
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}, expires
