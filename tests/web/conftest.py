"""Web client fixtures: users with passwords, signed-in clients, incidents made through the
same services the pages call."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.auth.service import Principal
from app.db import Database
from app.incidents import service as incidents
from app.incidents.schemas import IncidentCreate
from tests.conftest import Actor, MakeActor

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


@dataclass
class Browser:
    """An httpx client signed in as one user, with the session's CSRF token."""

    client: httpx.AsyncClient
    actor: Actor
    csrf: str

    async def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return await self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, **kw)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    page = await client.get("/signin")
    return await client.post(
        "/signin",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text), "next": "/"},
    )


SignedIn = Callable[..., Awaitable[Browser]]


@pytest.fixture
async def signed_in(app: Any, make_actor: MakeActor) -> AsyncIterator[SignedIn]:
    """``await signed_in("lead", "METI")``: a new user of that role, signed in."""
    clients: list[httpx.AsyncClient] = []

    async def make(role: str = "lead", ministry: str = "DOE", **kw: Any) -> Browser:
        actor = await make_actor(role, ministry, password=PASSWORD, **kw)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://rrg.test")
        clients.append(client)
        response = await sign_in(client, actor.user.email)
        assert response.status_code == 303, response.text
        board = await client.get("/")
        assert board.status_code == 200
        return Browser(client, actor, csrf_of(board.text))

    yield make
    for client in clients:
        await client.aclose()


async def report(db: Database, actor: Actor, **fields: Any) -> Any:
    """An incident reported by ``actor`` through the incidents service."""
    data = {"title": "Gallium export licensing", "minerals": ["Ga"], "category": "export_control"}
    data.update(fields)
    async with db.unit_of_work() as session:
        created = await incidents.create(
            session, Principal(user=actor.user), IncidentCreate.model_validate(data)
        )
    return created.incident


from tests.web.live import live_server  # noqa: E402,F401 - a fixture for the live tests
