"""Every paginated endpoint against a table of hostile cursors (SPEC §8).

For each list, a real cursor is taken from a one-item page and decoded; then each of its
values in turn is replaced by each hostile value, and the whole cursor by garbage. The
expected outcome comes from the kind of the value the real cursor held, judged here
independently of app.kit.pagination: a value the position cannot hold is a 422 problem
naming ``cursor`` (location query); a value it can hold is a 200. Never a 5xx.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.db import Database
from app.notifications.models import Notification
from tests.conftest import Actor, MakeActor, assert_problem
from tests.incidents.helpers import create

INCIDENT_SORTS = (
    "reported_at",
    "-reported_at",
    "updated_at",
    "-updated_at",
    "key",
    "-key",
    "severity",
    "-severity",
)

HOSTILE_VALUES: list[Any] = [
    "garbage",
    "",
    None,
    {},
    {"a": 1},
    [],
    [1, 2],
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    1.5,
    -0.0,
    True,
    False,
    0,
    "2026-01-01T00:00:00",  # naive
    "2026-01-01",  # a date, no time, no offset
    "9999-12-31T23:59:59-01:00",  # past year 9999 in UTC
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "2026-13-45T99:99:99+00:00",
    "2026-01-01T00:00:00+00:00",  # well formed: fine where a time or a string goes
    "00000000-0000-0000-0000-000000000000",  # a UUID: fine where a UUID or a string goes
    "\x00",
    "abc\x00def",
    "\ud800",  # a lone surrogate
    "x" * 300,
]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def encode(values: list[Any]) -> str:
    return _b64(json.dumps(values).encode())


def decode(cursor: str) -> list[Any]:
    values: list[Any] = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return values


GARBAGE_CURSORS: list[str] = [
    "!!!!",
    "not a cursor",
    "A",  # not a whole number of base64 characters
    "%00",
    "é",
    "a" * 2000,  # longer than any cursor
    _b64(b"not json"),
    _b64(b"\xff\xfe\xfd"),  # not UTF-8
    _b64(b"{}"),
    _b64(b'"a string"'),
    _b64(b"null"),
    _b64(b"42"),
    _b64(b"[]"),
    _b64(b"[NaN]"),
    _b64(b"[Infinity, -Infinity]"),
    _b64(b"[" * 300 + b"]" * 300),  # deeply nested
    _b64(b'["x", 1'),  # truncated
    _b64(b"9" * 600),  # a huge number
]


def is_time_with_offset(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def kind_of(value: Any) -> str:
    """What a position holds, from the value a real cursor put there."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    assert isinstance(value, str), value
    if is_uuid(value):
        return "uuid"
    if is_time_with_offset(value):
        return "datetime"
    return "str"


def acceptable(kind: str, value: Any, nullable: bool) -> bool:
    """Whether a position of this kind can hold the value (SPEC §8, literally)."""
    if value is None:
        return nullable
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return type(value) is int and -(2**63) <= value < 2**63
    if not isinstance(value, str):
        return False
    if kind == "uuid":
        return is_uuid(value)
    if kind == "datetime":
        if not is_time_with_offset(value):
            return False
        parsed = datetime.fromisoformat(value)
        offset = parsed.utcoffset()
        assert offset is not None
        try:
            parsed.replace(tzinfo=None) - offset  # the same moment in UTC
        except OverflowError:
            return False
        return True
    return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    nullable: frozenset[int] = frozenset()  # value positions (1-based) that may be null


@dataclass
class World:
    admin: Actor
    endpoints: list[Endpoint]


@pytest.fixture
async def world(client: httpx.AsyncClient, db: Database, make_actor: MakeActor) -> World:
    admin = await make_actor("admin", "DOE")
    await make_actor("viewer", "DOE")
    lead = await make_actor("lead", "DOE")
    extra = await client.post("/api/v1/tokens", json={"name": "second"}, headers=admin.headers)
    assert extra.status_code == 201, extra.text
    incidents = [await create(client, lead, title=f"Probe {n}") for n in range(2)]
    first = incidents[0]
    for n in range(2):
        comment = await client.post(
            f"/api/v1/incidents/{first['id']}/comments",
            json={"body": f"comment {n}"},
            headers=lead.headers,
        )
        assert comment.status_code == 201, comment.text
        due = (datetime.now(UTC) + timedelta(days=n + 1)).isoformat()
        action = await client.post(
            f"/api/v1/incidents/{first['id']}/actions",
            json={
                "title": f"Action {n}",
                "kind": "stockpile_release",
                "owning_ministry": "DOE",
                "due_at": due,
            },
            headers=lead.headers,
        )
        assert action.status_code == 201, action.text
    async with db.unit_of_work() as session:
        for n in range(2):
            session.add(
                Notification(
                    user_id=admin.id,
                    incident_id=uuid.UUID(first["id"]),
                    type="action.escalated",
                    title=f"note {n}",
                    data={},
                    created_at=datetime.now(UTC) - timedelta(minutes=n),
                )
            )
    endpoints = [
        *(
            Endpoint(f"incidents sort={s}", "/api/v1/incidents", (("sort", s),))
            for s in INCIDENT_SORTS
        ),
        Endpoint("action queue", "/api/v1/actions", nullable=frozenset({1})),
        Endpoint("incident actions", f"/api/v1/incidents/{first['id']}/actions"),
        Endpoint("timeline", f"/api/v1/incidents/{first['id']}/timeline"),
        Endpoint("comments", f"/api/v1/incidents/{first['id']}/comments"),
        Endpoint("notifications", "/api/v1/me/notifications"),
        Endpoint("users", "/api/v1/users"),
        Endpoint("tokens", "/api/v1/tokens"),
        Endpoint("directory", "/api/v1/directory"),
        Endpoint("ministries", "/api/v1/ministries"),
        Endpoint("escalation policies", "/api/v1/escalation-policies"),
        Endpoint("minerals", "/api/v1/minerals"),
    ]
    return World(admin=admin, endpoints=endpoints)


async def first_cursor(client: httpx.AsyncClient, actor: Actor, endpoint: Endpoint) -> str:
    page = await client.get(
        endpoint.path, params=[*endpoint.params, ("limit", "1")], headers=actor.headers
    )
    assert page.status_code == 200, (endpoint.name, page.text)
    cursor = page.json()["next_cursor"]
    assert cursor, f"{endpoint.name}: expected a second page"
    return str(cursor)


def assert_cursor_refused(response: httpx.Response, what: str) -> None:
    assert response.status_code == 422, (what, response.status_code, response.text)
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "cursor", (what, body)
    assert body["errors"][0]["location"] == "query", (what, body)


async def test_hostile_cursors_are_422_naming_the_cursor_on_every_list(
    client: httpx.AsyncClient, world: World
):
    refused = accepted = 0
    for endpoint in world.endpoints:
        real = decode(await first_cursor(client, world.admin, endpoint))
        tag, values = real[0], real[1:]

        async def get(cursor: str, endpoint: Endpoint = endpoint) -> httpx.Response:
            return await client.get(
                endpoint.path,
                params=[*endpoint.params, ("cursor", cursor)],
                headers=world.admin.headers,
            )

        # The real cursor works and gives the second item.
        assert (await get(encode(real))).status_code == 200, endpoint.name
        for garbage in [
            *GARBAGE_CURSORS,
            encode(values),  # no tag
            encode(["another-list", *values]),
            encode([tag]),
            encode([tag, *values, values[-1]]),
            encode([tag, *values[:-1]]),
        ]:
            assert_cursor_refused(await get(garbage), f"{endpoint.name}: {garbage[:40]}")
            refused += 1
        for position, value in enumerate(values, 1):
            kind = kind_of(value)
            for hostile in HOSTILE_VALUES:
                forged = list(real)
                forged[position] = hostile
                response = await get(encode(forged))
                what = f"{endpoint.name}: value {position} ({kind}) = {hostile!r:.40}"
                if acceptable(kind, hostile, position in endpoint.nullable):
                    assert response.status_code == 200, (what, response.text)
                    accepted += 1
                else:
                    assert_cursor_refused(response, what)
                    assert f"value {position}" in response.json()["detail"], what
                    refused += 1
    # Every list was tried, and most forged values were refused.
    assert len(world.endpoints) == 19 and refused > 3 * accepted > 0, (refused, accepted)


async def test_a_cursor_of_one_list_is_refused_by_another(client: httpx.AsyncClient, world: World):
    by_name = {e.name: e for e in world.endpoints}
    users = await first_cursor(client, world.admin, by_name["users"])
    newest = await first_cursor(client, world.admin, by_name["incidents sort=-reported_at"])
    for endpoint, cursor in [
        (by_name["directory"], users),
        (by_name["incidents sort=reported_at"], newest),
        (by_name["tokens"], newest),
    ]:
        response = await client.get(
            endpoint.path,
            params=[*endpoint.params, ("cursor", cursor)],
            headers=world.admin.headers,
        )
        assert_cursor_refused(response, endpoint.name)


@pytest.mark.parametrize("limit", ["0", "201", "-1", "1e3", "9" * 30, "x"])
async def test_page_sizes_outside_1_to_200_are_422_naming_limit(
    client: httpx.AsyncClient, make_actor: MakeActor, limit: str
):
    admin = await make_actor("admin")
    for path in ("/api/v1/users", "/api/v1/directory", "/api/v1/ministries", "/api/v1/tokens"):
        response = await client.get(path, params={"limit": limit}, headers=admin.headers)
        body = assert_problem(response, 422)
        assert body["errors"][0]["field"] == "limit", (path, body)


async def test_reference_lists_walk_every_row_once_in_order(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    viewer = await make_actor("viewer")

    async def walk(path: str, limit: int) -> list[Any]:
        items: list[Any] = []
        cursor = None
        for _ in range(100):
            params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = await client.get(path, params=params, headers=viewer.headers)
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) <= limit
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("the cursor never ran out")

    policies = [p["severity"] for p in await walk("/api/v1/escalation-policies", 1)]
    assert policies == ["SEV1", "SEV2", "SEV3", "SEV4"]
    whole = (await client.get("/api/v1/minerals", headers=viewer.headers)).json()
    assert whole["next_cursor"] is None and len(whole["items"]) >= 19
    paged = await walk("/api/v1/minerals", 7)
    assert paged == whole["items"]
    assert [(m["group"], m["code"]) for m in paged] == sorted(
        (m["group"], m["code"]) for m in paged
    )
