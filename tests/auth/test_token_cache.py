"""The process's cache of resolved API tokens: served while fresh, dropped by any committed
change to users, tokens or ministries (in this process at once, in others on PostgreSQL
through the notification), never trusted past its maximum age or a token's expiry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text, update

from app import caches, clock
from app.auth import cache as token_cache
from app.auth import service as auth_service
from app.auth.cache import principals
from app.auth.models import User
from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.auth.helpers import hour_long_token
from tests.conftest import REPO_ROOT, MakeActor, QueryCounter, assert_problem, rrg_env

ME = "/api/v1/me"
MAX_AGE = 5.0


@pytest.fixture
def cached(settings: Settings) -> Settings:
    """The suite's settings with the token cache on (the suite runs with it off)."""
    return settings.model_copy(update={"principal_cache_seconds": MAX_AGE})


@pytest.fixture
async def served(db: Database, cached: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running: on PostgreSQL the cache serves only while the
    notification listener (started there) is connected."""
    principals.drop()
    app = create_app(cached, db=db)
    async with app.router.lifespan_context(app):
        for _ in range(200):
            if caches.serving(db.dialect):
                break
            await asyncio.sleep(0.02)
        assert caches.serving(db.dialect)
        yield app


@pytest.fixture
async def api(served: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rrg.test") as c:
        yield c


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Moves the cache's clock forward by the given seconds."""
    offset = [0.0]
    real = token_cache.time.monotonic
    monkeypatch.setattr(token_cache.time, "monotonic", lambda: real() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


async def _cached_me(api: httpx.AsyncClient, headers: dict[str, str], counter: QueryCounter) -> Any:
    """GET /me until one is answered from the cache (no statement at all). On PostgreSQL the
    echo of an earlier commit's notification (the actor's creation) may drop what the first
    request cached, so a few rounds are allowed; one must be served from the cache."""
    for _ in range(5):
        assert (await api.get(ME, headers=headers)).status_code == 200
        before = counter.count
        response = await api.get(ME, headers=headers)
        assert response.status_code == 200, response.text
        if counter.count == before:
            return response.json()
        await asyncio.sleep(0.05)
    raise AssertionError("the second request was not served from the cache")


async def test_a_cached_token_is_served_without_a_statement_and_revoked_at_once(
    api: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    actor = await make_actor("viewer")
    created = (await api.post("/api/v1/tokens", json={"name": "x"}, headers=actor.headers)).json()
    new = {"Authorization": f"Bearer {created['token']}"}
    await _cached_me(api, new, count_queries())
    revoked = await api.delete(f"/api/v1/tokens/{created['id']}", headers=actor.headers)
    assert revoked.status_code == 204
    assert_problem(await api.get(ME, headers=new), 401)
    assert (await api.get(ME, headers=actor.headers)).status_code == 200


async def test_deactivating_a_user_refuses_their_cached_token_at_once(
    api: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    admin, viewer = await make_actor("admin"), await make_actor("viewer")
    await _cached_me(api, viewer.headers, count_queries())
    patched = await api.patch(
        f"/api/v1/users/{viewer.id}", json={"active": False}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert_problem(await api.get(ME, headers=viewer.headers), 401)


async def test_a_role_change_is_seen_by_the_next_request(
    api: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    admin, user = await make_actor("admin"), await make_actor("viewer")
    assert (await _cached_me(api, user.headers, count_queries()))["role"] == "viewer"
    assert_problem(await api.get("/api/v1/users", headers=user.headers), 403)
    patched = await api.patch(
        f"/api/v1/users/{user.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert (await api.get(ME, headers=user.headers)).json()["role"] == "admin"
    assert (await api.get("/api/v1/users", headers=user.headers)).status_code == 200


async def test_a_bulk_update_through_a_session_drops_the_cache(
    api: httpx.AsyncClient, db: Database, make_actor: MakeActor, count_queries: Any
):
    user = await make_actor("viewer")
    await _cached_me(api, user.headers, count_queries())
    async with db.unit_of_work() as session:
        await session.execute(update(User).where(User.id == user.id).values(display_name="Renamed"))
    assert (await api.get(ME, headers=user.headers)).json()["display_name"] == "Renamed"


async def test_an_expired_token_is_refused_even_when_cached(
    api: httpx.AsyncClient, make_actor: MakeActor, count_queries: Any
):
    actor = await make_actor("viewer")
    token, expires = await hour_long_token(api, actor)
    await _cached_me(api, token, count_queries())
    clock.set_source(lambda: expires + timedelta(seconds=1))
    assert_problem(await api.get(ME, headers=token), 401)


async def test_an_entry_older_than_the_maximum_age_is_read_again(
    api: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    count_queries: Any,
    monotonic: Callable[[float], None],
):
    actor = await make_actor("viewer")
    await _cached_me(api, actor.headers, count_queries())
    # A change no hook sees (plain SQL, no notification): only the maximum age bounds it.
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET active = false WHERE id = :id"),
            {"id": actor.id.hex} if db.dialect == "sqlite" else {"id": actor.id},
        )
    monotonic(MAX_AGE * 0.8)
    assert (await api.get(ME, headers=actor.headers)).status_code == 200
    monotonic(MAX_AGE * 0.4)
    assert_problem(await api.get(ME, headers=actor.headers), 401)


async def test_last_use_is_recorded_once_per_resolution_from_the_cache(
    api: httpx.AsyncClient, db: Database, make_actor: MakeActor, count_queries: Any
):
    actor = await make_actor("viewer")
    await _cached_me(api, actor.headers, count_queries())
    later = datetime.now(UTC) + auth_service.LAST_USED_RESOLUTION + timedelta(seconds=5)
    clock.set_source(lambda: later)
    counter: QueryCounter = count_queries()
    for _ in range(3):
        assert (await api.get(ME, headers=actor.headers)).status_code == 200
    touches = [q for q in counter.queries if q.lstrip().upper().startswith("UPDATE API_TOKENS")]
    assert len(touches) == 1, counter.queries
    # Touching a token does not drop the cache: the requests after it ran no statement.
    assert len(counter.queries) == 1, counter.queries
    tokens = (await api.get("/api/v1/tokens", headers=actor.headers)).json()["items"]
    assert datetime.fromisoformat(tokens[0]["last_used_at"]) == later


async def test_each_request_gets_its_own_user_instance(db: Database, make_actor: MakeActor):
    actor = await make_actor("viewer")
    principals.drop()
    first = await auth_service.principal_for_token(db, actor.token, max_age=60)
    second = await auth_service.principal_for_token(db, actor.token, max_age=60)
    assert first.user is not second.user and first.user.ministry is not second.user.ministry
    first.user.language = "ja"
    assert second.user.language == "en"
    third = await auth_service.principal_for_token(db, actor.token, max_age=60)
    assert third.user.language == "en" and third.user.ministry.code == "DOE"


async def test_an_answer_read_across_a_change_is_not_kept():
    cached = token_cache.CachedToken(uuid.uuid4(), None, None, {}, (), {}, ())
    ticket = principals.ticket()
    principals.drop()  # a change committed while the token was being read
    principals.put("h" * 64, cached, ticket)
    assert principals.get("h" * 64, max_age=60) is None
    principals.put("h" * 64, cached, principals.ticket())
    assert principals.get("h" * 64, max_age=60) is cached


def test_the_least_recently_used_entry_goes_first():
    cache = token_cache.PrincipalCache(capacity=2)
    cached = token_cache.CachedToken(uuid.uuid4(), None, None, {}, (), {}, ())
    for key in ("a", "b"):
        cache.put(key, cached, cache.ticket())
    assert cache.get("a", max_age=60) is cached
    cache.put("c", cached, cache.ticket())
    assert len(cache) == 2 and cache.get("b", max_age=60) is None
    assert cache.get("a", max_age=60) is cached and cache.get("c", max_age=60) is cached


@pytest.mark.postgresql_only
async def test_postgresql_a_change_committed_by_another_process_is_seen_promptly(
    api: httpx.AsyncClient,
    db: Database,
    database_url: str,
    make_actor: MakeActor,
    count_queries: Any,
):
    viewer = await make_actor("viewer")
    await _cached_me(api, viewer.headers, count_queries())
    # Another process changes the user through the ORM and commits: its commit notifies.
    script = (
        "import asyncio, sys, uuid\n"
        "from app.auth.models import User\n"
        "from app.config import get_settings\n"
        "from app.db import Database\n"
        "async def main():\n"
        "    db = Database.from_settings(get_settings())\n"
        "    async with db.unit_of_work() as session:\n"
        "        (await session.get(User, uuid.UUID(sys.argv[1]))).role = 'lead'\n"
        "    await db.dispose()\n"
        "asyncio.run(main())\n"
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, str(viewer.id)],
        env=rrg_env(database_url),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for _ in range(100):
        if (await api.get(ME, headers=viewer.headers)).json()["role"] == "lead":
            break
        await asyncio.sleep(0.02)
    assert (await api.get(ME, headers=viewer.headers)).json()["role"] == "lead"


@pytest.mark.postgresql_only
async def test_postgresql_no_entry_is_served_while_the_listener_is_down(
    db: Database, cached: Settings, make_actor: MakeActor, count_queries: Any
):
    actor = await make_actor("viewer")
    app = create_app(cached, db=db)  # its lifespan is not running: nobody listens
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rrg.test") as client:
        assert not caches.serving(db.dialect)
        await client.get(ME, headers=actor.headers)
        counter: QueryCounter = count_queries()
        assert (await client.get(ME, headers=actor.headers)).status_code == 200
        assert len(counter.queries) == 1, counter.queries
