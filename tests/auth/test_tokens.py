from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from app import clock
from app.auth.models import ApiToken
from app.db import Database
from tests.auth.helpers import hour_long_token
from tests.conftest import MakeActor, assert_problem


async def test_token_authenticates_as_its_user(client: httpx.AsyncClient, make_actor: MakeActor):
    actor = await make_actor("responder", "METI")
    response = await client.get("/api/v1/me", headers=actor.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == actor.user.email
    assert body["ministry"] == "METI"
    assert body["role"] == "responder"
    assert "password_hash" not in body


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer rrg_not-a-real-token",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "x" * 500,
    ],
)
async def test_missing_or_garbage_token_is_401(client: httpx.AsyncClient, header: str | None):
    headers = {"Authorization": header} if header else {}
    response = await client.get("/api/v1/me", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_created_token_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    actor = await make_actor("viewer")
    created = await client.post("/api/v1/tokens", json={"name": "ci"}, headers=actor.headers)
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("rrg_") and len(token) >= 4 + 43  # 32 bytes, URL-safe base64
    listing = await client.get("/api/v1/tokens", headers=actor.headers)
    assert token not in listing.text
    assert {t["name"] for t in listing.json()["items"]} == {"test", "ci"}
    async with db.unit_of_work(readonly=True) as session:
        from sqlalchemy import select

        hashes = (await session.scalars(select(ApiToken.token_hash))).all()
    assert token not in hashes and all(len(h) == 64 for h in hashes)
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})).is_success


async def test_revoked_token_is_refused_at_once(client: httpx.AsyncClient, make_actor: MakeActor):
    actor = await make_actor("viewer")
    created = (
        await client.post("/api/v1/tokens", json={"name": "x"}, headers=actor.headers)
    ).json()
    new = {"Authorization": f"Bearer {created['token']}"}
    assert (await client.get("/api/v1/me", headers=new)).status_code == 200
    revoked = await client.delete(f"/api/v1/tokens/{created['id']}", headers=actor.headers)
    assert revoked.status_code == 204
    assert_problem(await client.get("/api/v1/me", headers=new), 401)
    # The caller's other token still works.
    assert (await client.get("/api/v1/me", headers=actor.headers)).status_code == 200


async def test_expired_token_is_refused(client: httpx.AsyncClient, make_actor: MakeActor):
    actor = await make_actor("viewer")
    token, expires = await hour_long_token(client, actor)
    assert (await client.get("/api/v1/me", headers=token)).status_code == 200
    clock.set_source(lambda: expires + timedelta(seconds=1))
    assert_problem(await client.get("/api/v1/me", headers=token), 401)


async def test_expiry_in_the_past_is_422(client: httpx.AsyncClient, make_actor: MakeActor):
    actor = await make_actor("viewer")
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    response = await client.post(
        "/api/v1/tokens", json={"name": "x", "expires_at": past}, headers=actor.headers
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "expires_at"


async def test_last_used_at_is_recorded(client: httpx.AsyncClient, make_actor: MakeActor):
    actor = await make_actor("viewer")
    await client.get("/api/v1/me", headers=actor.headers)
    tokens = (await client.get("/api/v1/tokens", headers=actor.headers)).json()["items"]
    assert tokens[0]["last_used_at"] is not None


async def test_users_cannot_see_or_revoke_others_tokens(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    alice, bob = await make_actor("lead"), await make_actor("lead", "METI")
    bob_tokens = (await client.get("/api/v1/tokens", headers=bob.headers)).json()["items"]
    refused = await client.delete(f"/api/v1/tokens/{bob_tokens[0]['id']}", headers=alice.headers)
    assert_problem(refused, 404)
    peek = await client.get(f"/api/v1/tokens?user_id={bob.id}", headers=alice.headers)
    assert_problem(peek, 403)
    assert (await client.get("/api/v1/me", headers=bob.headers)).status_code == 200


async def test_admin_lists_and_revokes_the_tokens_of_their_own_ministry_only(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    meti_admin, doe_admin = await make_actor("admin", "METI"), await make_actor("admin", "DOE")
    bob = await make_actor("viewer", "METI")
    listed = await client.get(f"/api/v1/tokens?user_id={bob.id}", headers=meti_admin.headers)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["items"]) == 1
    token_id = listed.json()["items"][0]["id"]
    # Another ministry's admin may see that bob exists (the directory shows him) but not
    # his tokens, and cannot even find one by id.
    peek = await client.get(f"/api/v1/tokens?user_id={bob.id}", headers=doe_admin.headers)
    assert_problem(peek, 403)
    assert_problem(
        await client.delete(f"/api/v1/tokens/{token_id}", headers=doe_admin.headers), 404
    )
    assert (await client.get("/api/v1/me", headers=bob.headers)).status_code == 200
    revoked = await client.delete(f"/api/v1/tokens/{token_id}", headers=meti_admin.headers)
    assert revoked.status_code == 204
    assert_problem(await client.get("/api/v1/me", headers=bob.headers), 401)


async def test_tokens_never_reach_the_logs(
    client: httpx.AsyncClient, make_actor: MakeActor, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    actor = await make_actor("viewer")
    created = await client.post("/api/v1/tokens", json={"name": "n"}, headers=actor.headers)
    new_token = created.json()["token"]
    await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_token}"})
    await client.get("/api/v1/me", headers={"Authorization": "Bearer rrg_wrong"})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert new_token not in logged and actor.token not in logged


async def test_naive_expiry_is_422_naming_expires_at(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    actor = await make_actor("viewer")
    for naive in ("2031-01-01T00:00:00", "2031-01-01"):
        response = await client.post(
            "/api/v1/tokens", json={"name": "x", "expires_at": naive}, headers=actor.headers
        )
        body = assert_problem(response, 422)
        assert body["errors"][0]["field"] == "expires_at", body
    listing = (await client.get("/api/v1/tokens", headers=actor.headers)).json()["items"]
    assert [t["name"] for t in listing] == ["test"]


async def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_cannot_create_a_token_that_outlives_it(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    actor = await make_actor("responder")
    limit = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    parent = await client.post(
        "/api/v1/tokens",
        json={"name": "week", "expires_at": limit.isoformat()},
        headers=actor.headers,
    )
    assert parent.status_code == 201, parent.text
    week = await bearer(parent.json()["token"])

    # Without an expiry, the new token expires with the one that made it.
    child = await client.post("/api/v1/tokens", json={"name": "child"}, headers=week)
    assert child.status_code == 201, child.text
    assert datetime.fromisoformat(child.json()["expires_at"]) == limit

    # Later than the parent (even by a second, even written in another offset): refused.
    later = (limit + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=9)))
    refused = await client.post(
        "/api/v1/tokens", json={"name": "later", "expires_at": later.isoformat()}, headers=week
    )
    body = assert_problem(refused, 422)
    assert body["errors"][0]["field"] == "expires_at" and limit.isoformat() in body["detail"]

    # Earlier is fine, and binds the next generation in turn.
    sooner = limit - timedelta(days=6)
    day = await client.post(
        "/api/v1/tokens", json={"name": "day", "expires_at": sooner.isoformat()}, headers=week
    )
    assert day.status_code == 201, day.text
    grandchild = await client.post(
        "/api/v1/tokens",
        json={"name": "grandchild", "expires_at": limit.isoformat()},
        headers=await bearer(day.json()["token"]),
    )
    assert assert_problem(grandchild, 422)["errors"][0]["field"] == "expires_at"

    # A token without an expiry may create tokens without one.
    free = await client.post("/api/v1/tokens", json={"name": "free"}, headers=actor.headers)
    assert free.status_code == 201 and free.json()["expires_at"] is None
    names = {
        t["name"]
        for t in (await client.get("/api/v1/tokens", headers=actor.headers)).json()["items"]
    }
    assert names == {"test", "week", "child", "day", "free"}


async def test_token_list_pages_through_every_token_in_a_fixed_number_of_queries(
    client: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    actor = await make_actor("viewer")
    for n in range(6):
        created = await client.post("/api/v1/tokens", json={"name": f"t{n}"}, headers=actor.headers)
        assert created.status_code == 201
    await client.get("/api/v1/me", headers=actor.headers)  # last_used_at is fresh now
    seen: list[str] = []
    cursor = None
    queries = []
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        counter = count_queries()
        page = await client.get("/api/v1/tokens", params=params, headers=actor.headers)
        queries.append(len(counter.queries))
        assert page.status_code == 200, page.text
        seen += [t["name"] for t in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ["test", *(f"t{n}" for n in range(6))]
    # The caller's token, then the page: two queries whatever the page holds.
    assert queries == [2, 2, 2], queries
