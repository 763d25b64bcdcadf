"""The directory (GET /api/v1/directory, SPEC §1): active users for anyone to find, emails
for co-lead users only, filters, a stable cursor walk in a fixed number of queries, and the
index that serves its order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql, sqlite

from app.auth import service
from app.auth.models import User
from app.db import Database
from app.kit.pagination import page_query
from tests.conftest import Actor, MakeActor, QueryCounter, assert_problem

PARTNER = "JOGMEC"
DIRECTORY = "/api/v1/directory"


@dataclass
class People:
    doe_viewer: Actor
    meti_lead: Actor
    partner_viewer: Actor
    everyone: list[Actor]  # active ones
    gone: Actor  # deactivated


@pytest.fixture
async def people(client: httpx.AsyncClient, db: Database, make_actor: MakeActor) -> People:
    doe_admin = await make_actor("admin", "DOE")
    made = await client.post(
        "/api/v1/ministries",
        json={"code": PARTNER, "name": "JOGMEC", "country": "JP", "timezone": "Asia/Tokyo"},
        headers=doe_admin.headers,
    )
    assert made.status_code == 201, made.text
    specs = [
        ("viewer", "DOE", "Aiko Suzuki"),
        ("lead", "METI", "aiko TANAKA"),
        ("viewer", PARTNER, "Bob Smith"),
        ("responder", "METI", "佐藤 健二"),
        ("responder", "DOE", "100% Carol_Jones"),
        ("lead", "DOE", "Zed Zhou"),
        ("viewer", "METI", "Aiko Suzuki"),  # the same name as another: the id breaks the tie
        ("viewer", "DOE", "Aiko Gone"),
    ]
    actors = [await make_actor(role, ministry) for role, ministry, _ in specs]
    async with db.unit_of_work() as session:
        for actor, (_, _, name) in zip(actors, specs, strict=True):
            await session.execute(update(User).where(User.id == actor.id).values(display_name=name))
            actor.user.display_name = name
        await session.execute(update(User).where(User.id == actors[-1].id).values(active=False))
    return People(
        doe_viewer=actors[0],
        meti_lead=actors[1],
        partner_viewer=actors[2],
        everyone=[doe_admin, *actors[:-1]],
        gone=actors[-1],
    )


async def walk(client: httpx.AsyncClient, actor: Actor, limit: int, **params: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(50):
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        page = await client.get(DIRECTORY, params=query, headers=actor.headers)
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= limit
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ran out")


def expected_order(actors: list[Actor]) -> list[uuid.UUID]:
    """Display name in any case, ties by id (as each database orders ids: their bytes)."""
    return [a.id for a in sorted(actors, key=lambda a: (a.user.display_name.lower(), a.id.hex))]


async def test_everyone_finds_every_active_user_in_a_stable_order(
    client: httpx.AsyncClient, people: People
):
    for caller in (people.doe_viewer, people.partner_viewer, people.meti_lead):
        for limit in (1, 3, 50):
            found = await walk(client, caller, limit)
            assert [uuid.UUID(u["id"]) for u in found] == expected_order(people.everyone)
            assert str(people.gone.id) not in {u["id"] for u in found}
    entry = next(u for u in found if u["id"] == str(people.meti_lead.id))
    assert entry == {
        "id": str(people.meti_lead.id),
        "display_name": "aiko TANAKA",
        "ministry": "METI",
        "role": "lead",
        "email": people.meti_lead.user.email,
    }


async def test_emails_only_for_co_lead_callers(client: httpx.AsyncClient, people: People):
    doe = await walk(client, people.doe_viewer, 50)
    partner = await walk(client, people.partner_viewer, 50)
    assert all(u["email"] and "@" in u["email"] for u in doe)
    assert all(u["email"] is None for u in partner)
    assert [u["id"] for u in doe] == [u["id"] for u in partner]


async def test_q_matches_names_in_any_case_and_emails_for_co_lead_callers_only(
    client: httpx.AsyncClient, people: People
):
    def names(items: list[Any]) -> list[str]:
        return [u["display_name"] for u in items]

    for caller in (people.doe_viewer, people.partner_viewer):
        assert names(await walk(client, caller, 2, q="AIKO")) == [
            "Aiko Suzuki",
            "Aiko Suzuki",
            "aiko TANAKA",
        ]
        assert names(await walk(client, caller, 50, q="  tanaka ")) == ["aiko TANAKA"]
        assert names(await walk(client, caller, 50, q="健二")) == ["佐藤 健二"]
        # LIKE wildcards are literal characters.
        assert names(await walk(client, caller, 50, q="100%")) == ["100% Carol_Jones"]
        assert (
            names(await walk(client, caller, 50, q="c_r")) == []
        )  # "_" is not "any one character"
        assert names(await walk(client, caller, 50, q="gone")) == []  # inactive
    email_part = people.meti_lead.user.email.split("@")[0].upper()
    assert names(await walk(client, people.doe_viewer, 50, q=email_part)) == ["aiko TANAKA"]
    assert await walk(client, people.partner_viewer, 50, q=email_part) == []


async def test_ministry_and_role_filters(client: httpx.AsyncClient, people: People):
    meti = await walk(client, people.doe_viewer, 2, ministry="meti")
    assert {u["ministry"] for u in meti} == {"METI"} and len(meti) == 3
    leads = await walk(client, people.partner_viewer, 1, role="lead")
    assert [u["display_name"] for u in leads] == ["aiko TANAKA", "Zed Zhou"]
    both = await client.get(
        DIRECTORY,
        params=[("role", "lead"), ("role", "admin"), ("ministry", "DOE")],
        headers=people.doe_viewer.headers,
    )
    assert {(u["ministry"], u["role"]) for u in both.json()["items"]} == {
        ("DOE", "lead"),
        ("DOE", "admin"),
    }
    assert (await walk(client, people.doe_viewer, 50, ministry="NOPE")) == []
    bad = await client.get(DIRECTORY, params={"role": "emperor"}, headers=people.doe_viewer.headers)
    assert assert_problem(bad, 422)["errors"][0]["field"].startswith("role")
    assert_problem(await client.get(DIRECTORY), 401)


async def test_a_deactivated_caller_is_refused(client: httpx.AsyncClient, people: People):
    assert_problem(await client.get(DIRECTORY, headers=people.gone.headers), 401)


async def test_directory_pages_take_the_same_number_of_queries_whatever_their_size(
    client: httpx.AsyncClient, people: People, count_queries: Any
):
    await client.get("/api/v1/me", headers=people.doe_viewer.headers)  # last_used_at is fresh
    counts: dict[int, list[str]] = {}
    for limit in (1, 4, 50):
        counter: QueryCounter = count_queries()
        response = await client.get(
            DIRECTORY, params={"limit": limit, "q": "a"}, headers=people.doe_viewer.headers
        )
        assert response.status_code == 200
        counts[limit] = counter.queries
    # The caller's token, then one query for the page (ministries joined, not per user).
    assert [len(c) for c in counts.values()] == [2, 2, 2], counts


async def test_the_directory_order_is_served_by_its_index(db: Database, people: People):
    caller = people.doe_viewer.user
    query = service.directory_query(caller, q=None, ministry=None, roles=[])
    first = service.DIRECTORY_ORDER.encode(["aiko suzuki", people.doe_viewer.id])
    for cursor in (None, first):
        paged = page_query(query, service.DIRECTORY_ORDER, limit=50, cursor=cursor)
        async with db.unit_of_work() as session:
            if db.dialect == "postgresql":
                # Too few rows for the planner to prefer an index on its own: ask whether
                # it can use one at all.
                await session.execute(text("SET LOCAL enable_seqscan = off"))
                await session.execute(text("SET LOCAL enable_sort = off"))
                sql = paged.compile(
                    dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
                )
                plan = "\n".join(row[0] for row in await session.execute(text(f"EXPLAIN {sql}")))
            else:
                sql = paged.compile(
                    dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
                )
                plan = "\n".join(
                    str(row[-1]) for row in await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
                )
        assert "ix_users_directory" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort Key" not in plan, plan


async def test_nul_characters_and_malformed_codes_are_422_not_500(
    client: httpx.AsyncClient, people: People
):
    for params, field in (
        ({"q": "ai\x00ko"}, "q"),
        ({"ministry": "ME\x00TI"}, "ministry"),
        ({"ministry": "M E T I"}, "ministry"),
        ({"q": "x" * 201}, "q"),
    ):
        response = await client.get(DIRECTORY, params=params, headers=people.doe_viewer.headers)
        assert assert_problem(response, 422)["errors"][0]["field"] == field, params
