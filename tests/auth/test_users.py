from __future__ import annotations

import time
from typing import Any

import httpx

from app.auth import service as auth_service
from app.db import Database
from tests.conftest import MakeActor, QueryCounter, assert_problem

NEW_USER = {
    "email": "Kenji.Sato@Meti.Example.JP",
    "display_name": "佐藤 健二",
    "ministry": "METI",
    "role": "lead",
    "language": "ja",
    "password": "correct horse battery staple",
}


async def test_admin_creates_a_user_with_ministry_defaults(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin", "METI")
    response = await client.post("/api/v1/users", json=NEW_USER, headers=admin.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "kenji.sato@meti.example.jp"
    assert body["ministry"] == "METI" and body["timezone"] == "Asia/Tokyo"
    assert body["role"] == "lead" and body["active"] is True
    assert "password" not in response.text and "argon2" not in response.text


async def test_viewer_may_not_create_users(client: httpx.AsyncClient, make_actor: MakeActor):
    viewer = await make_actor("viewer")
    response = await client.post("/api/v1/users", json=NEW_USER, headers=viewer.headers)
    assert_problem(response, 403)
    lead = await make_actor("lead")
    assert_problem(await client.get("/api/v1/users", headers=lead.headers), 403)


async def test_duplicate_email_is_409_whatever_its_case(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin", "METI")
    assert (await client.post("/api/v1/users", json=NEW_USER, headers=admin.headers)).is_success
    again = {**NEW_USER, "email": NEW_USER["email"].upper()}
    assert_problem(await client.post("/api/v1/users", json=again, headers=admin.headers), 409)
    users = (await client.get("/api/v1/users", headers=admin.headers)).json()["items"]
    assert sum(u["email"] == "kenji.sato@meti.example.jp" for u in users) == 1


async def test_bad_bodies_are_422_naming_the_field(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin", "METI")
    cases = {
        "email": {**NEW_USER, "email": "not-an-email"},
        "role": {**NEW_USER, "role": "emperor"},
        "co_chair": {**NEW_USER, "co_chair": "sometimes"},
        "nickname": {**NEW_USER, "nickname": "ken"},
        "timezone": {**NEW_USER, "timezone": "Mars/Olympus"},
        "display_name": {k: v for k, v in NEW_USER.items() if k != "display_name"},
    }
    for field, payload in cases.items():
        body = assert_problem(
            await client.post("/api/v1/users", json=payload, headers=admin.headers), 422
        )
        assert field in [e["field"] for e in body["errors"]], (field, body)
    unknown = await client.post(
        "/api/v1/users", json={**NEW_USER, "nickname": "k"}, headers=admin.headers
    )
    assert unknown.json()["errors"][0]["reason"] == "unknown field"
    wrong_ministry = await client.post(
        "/api/v1/users", json={**NEW_USER, "ministry": "MOF"}, headers=admin.headers
    )
    assert assert_problem(wrong_ministry, 422)["errors"][0]["field"] == "ministry"
    users = (await client.get("/api/v1/users", headers=admin.headers)).json()["items"]
    assert [u["email"] for u in users] == [admin.user.email]


async def test_malformed_json_is_422(client: httpx.AsyncClient, make_actor: MakeActor):
    admin = await make_actor("admin")
    response = await client.post(
        "/api/v1/users",
        content=b'{"email": "a@b.org",',
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert_problem(response, 422)


async def test_patch_deactivates_and_the_token_stops_at_once(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin, viewer = await make_actor("admin", "METI"), await make_actor("viewer", "METI")
    assert (await client.get("/api/v1/me", headers=viewer.headers)).status_code == 200
    patched = await client.patch(
        f"/api/v1/users/{viewer.id}",
        json={"active": False, "role": "responder"},
        headers=admin.headers,
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is False and patched.json()["role"] == "responder"
    assert_problem(await client.get("/api/v1/me", headers=viewer.headers), 401)


async def test_patch_refuses_nulls_and_unknown_users(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin")
    body = assert_problem(
        await client.patch(f"/api/v1/users/{admin.id}", json={"role": None}, headers=admin.headers),
        422,
    )
    assert body["errors"][0]["field"] == "role"
    missing = "00000000-0000-0000-0000-000000000000"
    assert_problem(
        await client.patch(f"/api/v1/users/{missing}", json={}, headers=admin.headers), 404
    )


async def test_wrong_password_does_not_reveal_whether_the_email_exists(
    recommended_password_cost: None, db: Database, make_actor: MakeActor
):
    actor = await make_actor("viewer", email="known@doe.example.org", password="a long password!")
    async with db.unit_of_work(readonly=True) as session:
        assert (
            await auth_service.authenticate_password(session, actor.user.email, "a long password!")
        ) is not None
        timings = []
        for email in ("known@doe.example.org", "unknown@doe.example.org"):
            start = time.perf_counter()
            assert await auth_service.authenticate_password(session, email, "wrong") is None
            timings.append(time.perf_counter() - start)
    # Both paths run one Argon2 verification, so neither is markedly faster.
    assert min(timings) > max(timings) / 4, timings


async def test_ministries_are_seeded(client: httpx.AsyncClient, make_actor: MakeActor):
    viewer = await make_actor("viewer")
    items = (await client.get("/api/v1/ministries", headers=viewer.headers)).json()["items"]
    assert {(m["code"], m["timezone"], m["kind"]) for m in items} == {
        ("DOE", "America/New_York", "co_lead"),
        ("METI", "Asia/Tokyo", "co_lead"),
    }
    assert_problem(await client.get("/api/v1/ministries"), 401)


async def test_concurrent_writers_wait_instead_of_failing(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    import asyncio

    admin = await make_actor("admin", "METI")

    async def create(n: int) -> int:
        payload = {**NEW_USER, "email": f"user{n}@meti.example.jp"}
        return (await client.post("/api/v1/users", json=payload, headers=admin.headers)).status_code

    statuses = await asyncio.gather(*(create(n) for n in range(25)))
    assert statuses == [201] * 25
    users = (await client.get("/api/v1/users", headers=admin.headers)).json()["items"]
    assert len(users) == 26


async def test_user_list_pages_by_email_in_a_fixed_number_of_queries(
    client: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    admin = await make_actor("admin", "METI")
    for n in range(5):
        await make_actor("viewer", "METI", email=f"u{n}@meti.example.jp")
    await make_actor("viewer", "DOE")  # not this admin's
    await client.get("/api/v1/me", headers=admin.headers)  # last_used_at is fresh
    emails: list[str] = []
    counts: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        counter: QueryCounter = count_queries()
        page = await client.get("/api/v1/users", params=params, headers=admin.headers)
        counts.append(len(counter.queries))
        assert page.status_code == 200, page.text
        emails += [u["email"] for u in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert emails == sorted([admin.user.email, *(f"u{n}@meti.example.jp" for n in range(5))])
    # The caller, the ministries in their scope, the page (each user's ministry joined).
    assert counts == [3, 3, 3], counts


def test_nobody_grants_a_role_above_their_own():
    from app.auth.permissions import may_grant_role
    from app.auth.roles import ROLES

    granted = {(a, r) for a in ROLES for r in ROLES if may_grant_role(_user(a), r)}
    assert granted == {
        ("viewer", "viewer"),
        ("responder", "viewer"),
        ("responder", "responder"),
        ("lead", "viewer"),
        ("lead", "responder"),
        ("lead", "lead"),
        ("admin", "viewer"),
        ("admin", "responder"),
        ("admin", "lead"),
        ("admin", "admin"),
    }


def _user(role: str) -> Any:
    from app.auth.models import User

    return User(role=role)
