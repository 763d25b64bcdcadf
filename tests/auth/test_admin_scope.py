"""Admin scope (SPEC §1), table-driven: each role of DOE, METI and a partner against each
user, token, ministry and policy endpoint, with the exact status, and nothing changed by a
refused request.

The expected statuses are written here from SPEC §1, independently of app.auth.permissions:
an admin manages the users and tokens of their own ministry; DOE and METI admins also those
of partners, the partner organisations themselves, the escalation policies and the co_chair
flag. What the caller may not see is 404 (another's token, an inactive user outside their
scope); what they may see but not change is 403.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.auth.models import ApiToken, User
from app.db import Database, table_of
from app.escalation.models import EscalationPolicy, EscalationPolicyChange
from app.ministries.models import Ministry
from tests.conftest import Actor, MakeActor, assert_problem

ROLES = ("viewer", "responder", "lead", "admin")
PARTNER = "JOGMEC"
MINISTRIES = ("DOE", "METI", PARTNER)
CO_LEAD_ADMINS = frozenset({"DOE admin", "METI admin"})
ALL = frozenset(f"{m} {r}" for m in MINISTRIES for r in ROLES)
SEV2 = {"triage_within": "PT4H", "level2_after": "PT8H", "level3_after": "PT24H"}


def admins_of(ministry: str) -> frozenset[str]:
    """SPEC §1: the ministry's own admins; for a partner, DOE's and METI's admins too."""
    return frozenset({f"{ministry} admin"}) | (CO_LEAD_ADMINS if ministry == PARTNER else set())


def co_chair_setters_for(ministry: str) -> frozenset[str]:
    """The co_chair flag is for DOE and METI admins, on the users they manage."""
    return admins_of(ministry) & CO_LEAD_ADMINS


PARTNER_BODY = {
    "name": "Japan Organization for Metals and Energy Security",
    "name_ja": "エネルギー・金属鉱物資源機構",
    "country": "JP",
    "timezone": "Asia/Tokyo",
}


@dataclass
class World:
    actors: dict[str, Actor]
    targets: dict[str, Actor]  # an active viewer of each ministry (not an actor)
    inactive: dict[str, Actor]  # a deactivated viewer of each ministry
    target_tokens: dict[str, str]  # each target's token id


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: Callable[[World], str]
    allowed: frozenset[str]
    ok: int = 200
    denied_admin: int = 403  # an admin out of scope
    denied_other: int = 403  # a viewer, responder or lead
    body: Callable[[World, str, int], Any] | None = None  # (world, label, serial) -> JSON
    changes: bool = True  # an allowed request changes something

    def expected(self, label: str) -> int:
        if label in self.allowed:
            return self.ok
        return self.denied_admin if label.endswith(" admin") else self.denied_other


def new_user(ministry: str, **extra: Any) -> Callable[[World, str, int], Any]:
    def body(_: World, label: str, n: int) -> Any:
        return {
            "email": f"made{n}.{label.replace(' ', '.')}@{ministry.lower()}.example.org",
            "display_name": f"Made by {label}",
            "ministry": ministry,
            **extra,
        }

    return body


def renamed(_: World, label: str, n: int) -> Any:
    return {"display_name": f"Renamed by {label} ({n})"}


def new_partner(_: World, label: str, n: int) -> Any:
    return {**PARTNER_BODY, "code": f"P{n}"}


def partner_rename(_: World, label: str, n: int) -> Any:
    return {"name": f"Partner renamed by {label} ({n})"}


def cases() -> list[Case]:
    out = [
        Case(
            "list users",
            "GET",
            lambda w: "/api/v1/users",
            allowed=frozenset(f"{m} admin" for m in MINISTRIES),
            changes=False,
        ),
        Case("own tokens", "GET", lambda w: "/api/v1/tokens", allowed=ALL, changes=False),
        Case("ministries", "GET", lambda w: "/api/v1/ministries", allowed=ALL, changes=False),
        Case(
            "the partner",
            "GET",
            lambda w: f"/api/v1/ministries/{PARTNER}",
            allowed=ALL,
            changes=False,
        ),
        Case("directory", "GET", lambda w: "/api/v1/directory", allowed=ALL, changes=False),
        Case(
            "policies", "GET", lambda w: "/api/v1/escalation-policies", allowed=ALL, changes=False
        ),
        Case(
            "add a partner",
            "POST",
            lambda w: "/api/v1/ministries",
            allowed=CO_LEAD_ADMINS,
            ok=201,
            body=new_partner,
        ),
        Case(
            "change the partner",
            "PATCH",
            lambda w: f"/api/v1/ministries/{PARTNER}",
            allowed=CO_LEAD_ADMINS,
            body=partner_rename,
        ),
        Case(
            "change a co-lead ministry",
            "PATCH",
            lambda w: "/api/v1/ministries/METI",
            allowed=frozenset(),
            body=partner_rename,
        ),
        Case(
            "change a policy",
            "PUT",
            lambda w: "/api/v1/escalation-policies/SEV2",
            allowed=CO_LEAD_ADMINS,
            body=lambda w, label, n: {**SEV2, "update_every": f"PT{24 + n % 5}H"},
        ),
    ]
    for m in MINISTRIES:
        out += [
            Case(
                f"create a {m} viewer",
                "POST",
                lambda w: "/api/v1/users",
                allowed=admins_of(m),
                ok=201,
                body=new_user(m),
            ),
            Case(
                f"create a {m} admin",
                "POST",
                lambda w: "/api/v1/users",
                allowed=admins_of(m),
                ok=201,
                body=new_user(m, role="admin"),
            ),
            Case(
                f"create a {m} co-chair",
                "POST",
                lambda w: "/api/v1/users",
                allowed=co_chair_setters_for(m),
                ok=201,
                body=new_user(m, co_chair=True),
            ),
            Case(
                f"rename a {m} user",
                "PATCH",
                lambda w, m=m: f"/api/v1/users/{w.targets[m].id}",
                allowed=admins_of(m),
                body=renamed,
            ),
            Case(
                f"make a {m} user admin",
                "PATCH",
                lambda w, m=m: f"/api/v1/users/{w.targets[m].id}",
                allowed=admins_of(m),
                body=lambda w, label, n: {"role": "admin" if n % 2 else "lead"},
                changes=False,  # may set the role it already has; the response shows it
            ),
            Case(
                f"flip a {m} user's co_chair",
                "PATCH",
                lambda w, m=m: f"/api/v1/users/{w.targets[m].id}",
                allowed=co_chair_setters_for(m),
                body=lambda w, label, n: {"co_chair": bool(n % 2)},
                changes=False,  # may set the flag it already has; the response shows it
            ),
            Case(
                f"rename an inactive {m} user",
                "PATCH",
                lambda w, m=m: f"/api/v1/users/{w.inactive[m].id}",
                allowed=admins_of(m),
                denied_admin=404,
                body=renamed,
            ),
            Case(
                f"list a {m} user's tokens",
                "GET",
                lambda w, m=m: f"/api/v1/tokens?user_id={w.targets[m].id}",
                allowed=admins_of(m),
                changes=False,
            ),
            Case(
                f"list an inactive {m} user's tokens",
                "GET",
                lambda w, m=m: f"/api/v1/tokens?user_id={w.inactive[m].id}",
                allowed=admins_of(m),
                denied_admin=404,
                denied_other=404,
                changes=False,
            ),
            Case(
                f"revoke a {m} user's token",
                "DELETE",
                lambda w, m=m: f"/api/v1/tokens/{w.target_tokens[m]}",
                allowed=admins_of(m),
                ok=204,
                denied_admin=404,
                denied_other=404,
                changes=False,  # revoking twice is the same as once
            ),
        ]
    return out


async def snapshot(db: Database) -> dict[str, list[Any]]:
    """Everything an admin endpoint could change (last_used_at moves on every first use)."""
    tokens = table_of(ApiToken)
    async with db.unit_of_work(readonly=True) as session:
        return {
            "users": sorted(map(tuple, await session.execute(select(table_of(User))))),
            "tokens": sorted(
                map(
                    tuple,
                    await session.execute(
                        select(*(c for c in tokens.c if c.name != "last_used_at"))
                    ),
                )
            ),
            "ministries": sorted(map(tuple, await session.execute(select(table_of(Ministry))))),
            "policies": sorted(
                map(tuple, await session.execute(select(table_of(EscalationPolicy))))
            ),
            "policy changes": sorted(
                map(tuple, await session.execute(select(table_of(EscalationPolicyChange))))
            ),
        }


@pytest.fixture
async def world(client: httpx.AsyncClient, db: Database, make_actor: MakeActor) -> World:
    actors = {f"DOE {r}": await make_actor(r, "DOE") for r in ROLES}
    created = await client.post(
        "/api/v1/ministries",
        json={**PARTNER_BODY, "code": PARTNER},
        headers=actors["DOE admin"].headers,
    )
    assert created.status_code == 201, created.text
    for m, r in itertools.product(("METI", PARTNER), ROLES):
        actors[f"{m} {r}"] = await make_actor(r, m)
    targets = {m: await make_actor("viewer", m) for m in MINISTRIES}
    inactive = {m: await make_actor("viewer", m) for m in MINISTRIES}
    async with db.unit_of_work() as session:
        await session.execute(
            update(User).where(User.id.in_([a.id for a in inactive.values()])).values(active=False)
        )
        tokens = dict((await session.execute(select(ApiToken.user_id, ApiToken.id))).all())
    return World(
        actors=actors,
        targets=targets,
        inactive=inactive,
        target_tokens={m: str(tokens[a.id]) for m, a in targets.items()},
    )


async def test_every_role_of_every_ministry_against_every_admin_endpoint(
    client: httpx.AsyncClient, db: Database, world: World
):
    serial = itertools.count()
    checked = refused = 0
    for case in cases():
        for label, actor in world.actors.items():
            n = next(serial)
            body = case.body(world, label, n) if case.body else None
            before = await snapshot(db)
            response = await client.request(
                case.method, case.path(world), json=body, headers=actor.headers
            )
            expected = case.expected(label)
            what = f"{case.name} as {label}"
            assert response.status_code == expected, (what, response.text)
            after = await snapshot(db)
            if expected >= 400:
                assert_problem(response, expected)
                assert after == before, f"{what}: a refused request changed something"
                refused += 1
            else:
                if case.changes:
                    assert after != before, f"{what}: allowed, but nothing changed"
                if case.method == "PATCH":
                    assert {k: response.json()[k] for k in body} == body, what
            checked += 1
    assert checked == len(cases()) * 12 and refused > checked // 2, (checked, refused)


async def test_an_admin_lists_exactly_the_users_they_manage(
    client: httpx.AsyncClient, world: World
):
    everyone = {
        a.user.email: m
        for m in MINISTRIES
        for a in (
            *(world.actors[f"{m} {r}"] for r in ROLES),
            world.targets[m],
            world.inactive[m],
        )
    }
    for m in MINISTRIES:
        admin = world.actors[f"{m} admin"]
        listed: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            page = await client.get("/api/v1/users", params=params, headers=admin.headers)
            assert page.status_code == 200, page.text
            listed += [u["email"] for u in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        scope = {m, PARTNER} if m in ("DOE", "METI") else {m}
        assert listed == sorted(e for e, owner in everyone.items() if owner in scope), m


async def test_a_partner_admin_cannot_make_a_co_chair_or_reach_other_ministries(
    client: httpx.AsyncClient, db: Database, world: World
):
    partner_admin = world.actors[f"{PARTNER} admin"]
    refused = await client.post(
        "/api/v1/users",
        json={
            "email": "chair@jogmec.example.jp",
            "display_name": "Would-be chair",
            "ministry": PARTNER,
            "co_chair": True,
        },
        headers=partner_admin.headers,
    )
    assert "co_chair" in assert_problem(refused, 403)["detail"]
    # Creating an ordinary user of their own ministry works; the co_chair flag stays off.
    made = await client.post(
        "/api/v1/users",
        json={"email": "analyst@jogmec.example.jp", "display_name": "Analyst", "ministry": PARTNER},
        headers=partner_admin.headers,
    )
    assert made.status_code == 201 and made.json()["co_chair"] is False
    for ministry in ("DOE", "METI"):
        body = {"email": f"x@{ministry}.example.org", "display_name": "x", "ministry": ministry}
        refused = await client.post("/api/v1/users", json=body, headers=partner_admin.headers)
        assert ministry in assert_problem(refused, 403)["detail"]
