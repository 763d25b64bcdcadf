"""Partner organisations (SPEC §1): added and changed by DOE and METI admins through the API
and by the operator with `rrg ministries create`; the list is cursor-paginated."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx

from app.db import Database
from tests.conftest import Actor, MakeActor, QueryCounter, assert_problem

MINISTRIES = "/api/v1/ministries"
JOGMEC = {
    "code": "jogmec",
    "name": "Japan Organization for Metals and Energy Security",
    "name_ja": "エネルギー・金属鉱物資源機構",
    "country": "JP",
    "timezone": "Asia/Tokyo",
}


async def every_ministry(client: httpx.AsyncClient, actor: Actor, limit: int) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await client.get(MINISTRIES, params=params, headers=actor.headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ran out")


async def test_a_co_lead_admin_adds_and_changes_a_partner(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin", "METI")
    created = await client.post(MINISTRIES, json=JOGMEC, headers=admin.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("code", "kind", "country", "timezone", "name_ja")} == {
        "code": "JOGMEC",
        "kind": "partner",
        "country": "JP",
        "timezone": "Asia/Tokyo",
        "name_ja": JOGMEC["name_ja"],
    }
    # Its users can be created at once, by its new admin's co-lead colleagues too.
    partner_user = await client.post(
        "/api/v1/users",
        json={"email": "a@jogmec.example.jp", "display_name": "A", "ministry": "JOGMEC"},
        headers=admin.headers,
    )
    assert partner_user.status_code == 201 and partner_user.json()["timezone"] == "Asia/Tokyo"

    changed = await client.patch(
        f"{MINISTRIES}/jogmec",
        json={"name": "JOGMEC", "timezone": "Asia/Tokyo", "country": "JP"},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "JOGMEC" and changed.json()["name_ja"] == JOGMEC["name_ja"]
    viewer = await make_actor("viewer", "DOE")
    fetched = await client.get(f"{MINISTRIES}/Jogmec", headers=viewer.headers)
    assert fetched.status_code == 200 and fetched.json() == changed.json()
    assert_problem(await client.get(f"{MINISTRIES}/NOPE", headers=viewer.headers), 404)

    # The Japanese name defaults to the English one.
    us_partner = {
        "code": "DLA",
        "name": "Defense Logistics Agency",
        "country": "US",
        "timezone": "America/New_York",
    }
    made = await client.post(MINISTRIES, json=us_partner, headers=admin.headers)
    assert made.status_code == 201 and made.json()["name_ja"] == "Defense Logistics Agency"
    codes = [m["code"] for m in await every_ministry(client, admin, 1)]
    assert codes == ["DLA", "DOE", "JOGMEC", "METI"]


async def test_bad_partner_bodies_are_422_naming_the_field_and_create_nothing(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin", "DOE")
    cases = {
        "code": [{**JOGMEC, "code": c} for c in ("J", "1ABC", "A B", "X" * 17, "")],
        "country": [{**JOGMEC, "country": c} for c in ("jp", "JPN", "J1")],
        "timezone": [{**JOGMEC, "timezone": "Mars/Olympus"}],
        "name": [{k: v for k, v in JOGMEC.items() if k != "name"}, {**JOGMEC, "name": ""}],
        "kind": [{**JOGMEC, "kind": "co_lead"}],
    }
    for field, bodies in cases.items():
        for body in bodies:
            response = await client.post(MINISTRIES, json=body, headers=admin.headers)
            problem = assert_problem(response, 422)
            assert field in [e["field"] for e in problem["errors"]], (field, body, problem)
    assert [m["code"] for m in await every_ministry(client, admin, 50)] == ["DOE", "METI"]


async def test_duplicate_codes_and_unknown_or_co_lead_ministries(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin", "DOE")
    assert (await client.post(MINISTRIES, json=JOGMEC, headers=admin.headers)).status_code == 201
    again = await client.post(MINISTRIES, json={**JOGMEC, "code": "JOGMEC"}, headers=admin.headers)
    assert_problem(again, 409)
    for code in ("DOE", "doe"):
        taken = await client.post(MINISTRIES, json={**JOGMEC, "code": code}, headers=admin.headers)
        assert_problem(taken, 409)
    missing = await client.patch(f"{MINISTRIES}/NOPE", json={"name": "x"}, headers=admin.headers)
    assert_problem(missing, 404)
    for malformed in ("D%00E", "D%20E", "X" * 17):
        refused = await client.patch(
            f"{MINISTRIES}/{malformed}", json={"name": "x"}, headers=admin.headers
        )
        assert assert_problem(refused, 422)["errors"][0]["field"] == "code", malformed
    co_lead = await client.patch(f"{MINISTRIES}/DOE", json={"name": "x"}, headers=admin.headers)
    assert_problem(co_lead, 403)
    for body, field in (
        ({"name": None}, "name"),
        ({"kind": "co_lead"}, "kind"),
        ({"timezone": "Nowhere"}, "timezone"),
    ):
        refused = await client.patch(f"{MINISTRIES}/JOGMEC", json=body, headers=admin.headers)
        assert field in [e["field"] for e in assert_problem(refused, 422)["errors"]], body
    ministries = {m["code"]: m for m in await every_ministry(client, admin, 50)}
    assert ministries["DOE"]["name"] == "United States Department of Energy"
    assert ministries["JOGMEC"]["name"] == JOGMEC["name"]


async def test_the_ministry_list_takes_the_same_queries_whatever_the_page(
    client: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    admin = await make_actor("admin", "DOE")
    for n in range(4):
        made = await client.post(
            MINISTRIES, json={**JOGMEC, "code": f"P{n}"}, headers=admin.headers
        )
        assert made.status_code == 201
    await client.get("/api/v1/me", headers=admin.headers)  # last_used_at is fresh
    counts = []
    for limit in (1, 3, 50):
        counter: QueryCounter = count_queries()
        page = await client.get(MINISTRIES, params={"limit": limit}, headers=admin.headers)
        assert len(page.json()["items"]) == min(limit, 6)
        counts.append(len(counter.queries))
    assert counts == [2, 2, 2], counts


def rrg(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**os.environ, "RRG_DATABASE_URL": url, "PYTHONPATH": os.getcwd()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_rrg_ministries_create_adds_a_partner(
    database_url: str, client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    created = rrg(
        [
            "ministries",
            "create",
            "--code",
            "jogmec",
            "--name",
            JOGMEC["name"],
            "--name-ja",
            JOGMEC["name_ja"],
            "--country",
            "JP",
            "--timezone",
            "Asia/Tokyo",
        ],
        database_url,
    )
    assert created.returncode == 0, created.stderr
    assert "JOGMEC" in created.stdout
    duplicate = rrg(
        [
            "ministries",
            "create",
            "--code",
            "JOGMEC",
            "--name",
            "x",
            "--country",
            "JP",
            "--timezone",
            "Asia/Tokyo",
        ],
        database_url,
    )
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    bad = rrg(
        [
            "ministries",
            "create",
            "--code",
            "X1",
            "--name",
            "x",
            "--country",
            "JP",
            "--timezone",
            "Mars/Olympus",
        ],
        database_url,
    )
    assert bad.returncode == 1 and "timezone" in bad.stderr
    user = rrg(
        [
            "users",
            "create",
            "--email",
            "a@jogmec.example.jp",
            "--name",
            "A",
            "--ministry",
            "JOGMEC",
        ],
        database_url,
    )
    assert user.returncode == 0, user.stderr
    viewer = await make_actor("viewer", "DOE")
    codes = {m["code"]: m for m in await every_ministry(client, viewer, 50)}
    assert set(codes) == {"DOE", "METI", "JOGMEC"}
    assert codes["JOGMEC"]["kind"] == "partner" and codes["JOGMEC"]["name_ja"] == JOGMEC["name_ja"]


async def test_a_partner_is_added_once_per_idempotency_key(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin", "METI")
    keyed = {**admin.headers, "Idempotency-Key": "add-jogmec"}
    first = await client.post(MINISTRIES, json=JOGMEC, headers=keyed)
    again = await client.post(MINISTRIES, json=JOGMEC, headers=keyed)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert again.headers.get("idempotent-replayed") == "true", again.text
    assert (again.status_code, again.json()) == (201, first.json())
    codes = [m["code"] for m in await every_ministry(client, admin, 50)]
    assert codes.count("JOGMEC") == 1

    # The same key with another body is refused, and adds nothing.
    other = await client.post(MINISTRIES, json={**JOGMEC, "code": "JOIN"}, headers=keyed)
    assert assert_problem(other, 422)["errors"][0]["field"] == "Idempotency-Key"
    assert "JOIN" not in [m["code"] for m in await every_ministry(client, admin, 50)]
    # Without a key, a second add of the same code is the usual conflict.
    assert_problem(await client.post(MINISTRIES, json=JOGMEC, headers=admin.headers), 409)
