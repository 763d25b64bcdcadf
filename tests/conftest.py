"""Test fixtures: every database test runs on SQLite and, when configured, PostgreSQL.

The database is built by the real migrations once per backend; each test starts from
the migrated state (reference data kept, everything else cleared afterwards).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher, profiles
from pydantic import SecretStr
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from app import caches, clock
from app.auth import security
from app.auth import service as auth_service
from app.auth.models import User
from app.auth.schemas import TokenCreate, UserCreate
from app.auth.service import Principal
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.models import metadata
from app.web import start_live_updates, stop_live_updates
from deploy.cluster import ensure_database

# Under pytest-xdist each worker process runs a session of its own, on a PostgreSQL database
# of its own named after the configured one (``test`` -> ``test_gw0``, ``test_gw1`` ...);
# everything derived from POSTGRES_URL (scratch databases included) follows it.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _database_of_this_worker(url: str) -> str:
    if not url or not XDIST_WORKER:
        return url
    configured = make_url(url)
    return configured.set(database=f"{configured.database}_{XDIST_WORKER}").render_as_string(
        hide_password=False
    )


POSTGRES_URL = _database_of_this_worker(os.environ.get("RRG_TEST_POSTGRES_URL", ""))
REQUIRE_POSTGRES = os.environ.get("RRG_REQUIRE_POSTGRES") == "1"
REQUIRE_BROWSER = os.environ.get("RRG_REQUIRE_BROWSER") == "1"
CHROMIUM = Path("/usr/bin/chromium")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]

# Tables whose rows are seeded by migrations and survive between tests.
REFERENCE_TABLES = {"alembic_version", "ministries", "minerals", "escalation_policies", "counters"}
HOUR, DAY = 3600, 86400
# The audit key every test database's chains are written with (tests and the ``rrg``
# subprocesses they start), stated rather than read from whatever the environment holds.
TEST_AUDIT_KEY = "rrg-test-audit-key-not-for-production-use"
# SPEC §4 defaults, as seeded by migration; restored after every test.
DEFAULT_POLICIES = {
    "SEV1": {"t": 1 * HOUR, "l2": 2 * HOUR, "l3": 6 * HOUR, "u": 12 * HOUR},
    "SEV2": {"t": 4 * HOUR, "l2": 8 * HOUR, "l3": 24 * HOUR, "u": 24 * HOUR},
    "SEV3": {"t": 24 * HOUR, "l2": 48 * HOUR, "l3": 5 * DAY, "u": 3 * DAY},
    "SEV4": {"t": 72 * HOUR, "l2": 5 * DAY, "l3": 10 * DAY, "u": 7 * DAY},
}

# Argon2 at the library's recommended cost takes a tenth of a second or more per hash and
# per check, and the tests sign in hundreds of users: they hash at the cheapest cost. The
# code path is the same (Argon2id; a check reads the cost from the stored hash). A test
# about the cost itself asks for ``recommended_password_cost``.
RECOMMENDED_HASHER, RECOMMENDED_DUMMY_HASH = security._hasher, security._DUMMY_HASH
security._hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
security._DUMMY_HASH = security._hasher.hash("no-such-user")


@pytest.fixture
def recommended_password_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords hashed in this test are hashed at the production cost."""
    monkeypatch.setattr(security, "_hasher", RECOMMENDED_HASHER)
    monkeypatch.setattr(security, "_DUMMY_HASH", RECOMMENDED_DUMMY_HASH)


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_BROWSER and not CHROMIUM.exists():
        pytest.exit(f"RRG_REQUIRE_BROWSER=1 but {CHROMIUM} is missing", returncode=1)
    if REQUIRE_POSTGRES and not POSTGRES_URL:
        pytest.exit("RRG_REQUIRE_POSTGRES=1 but RRG_TEST_POSTGRES_URL is not set", returncode=1)
    if POSTGRES_URL:
        try:
            asyncio.run(_prepare_test_database(POSTGRES_URL))
            asyncio.run(_ping(POSTGRES_URL))
        except Exception as exc:
            if REQUIRE_POSTGRES:
                pytest.exit(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}", returncode=1)
            BACKENDS.remove("postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A PostgreSQL-only test is not run on SQLite at all, rather than reported as skipped.
    def sqlite_instance_of_postgresql_only(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return (
            item.get_closest_marker("postgresql_only") is not None
            and callspec is not None
            and callspec.params.get("backend") == "sqlite"
        )

    deselected = [item for item in items if sqlite_instance_of_postgresql_only(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


async def _prepare_test_database(url: str) -> None:
    """Create the test database if need be. Its commits do not wait for the WAL to reach
    the disk (as SQLite's ``synchronous=NORMAL``): a test never outlives a server crash,
    and a commit is visible to every other session at once either way."""
    await ensure_database(url)
    name = make_url(url).database
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await conn.close()


async def _ping(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await db.dispose()


async def _reset_postgres_schema(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await db.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
async def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'rrg.db'}"
    else:
        url = POSTGRES_URL
        await _reset_postgres_schema(url)
    await asyncio.to_thread(upgrade, url, audit_key=TEST_AUDIT_KEY.encode())
    return url


@pytest.fixture(scope="session")
async def shared_db(settings: Settings) -> AsyncIterator[Database]:
    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        audit_key=settings.audit_key_bytes(),
    )
    yield db
    await db.dispose()


async def clear_data(db: Database) -> None:
    tables = [t.name for t in reversed(metadata.sorted_tables) if t.name not in REFERENCE_TABLES]
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            # DELETE of the few rows a test leaves takes milliseconds where TRUNCATE of every
            # table takes a third of a second. As a replica session, this transaction fires
            # no triggers: the timeline's append-only guard does not refuse the clean-up.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for name in tables:
            await conn.execute(text(f"DELETE FROM {name}"))
        await conn.execute(text("DELETE FROM ministries WHERE code NOT IN ('DOE', 'METI')"))
        # Incident numbers restart with the data they numbered.
        await conn.execute(text("UPDATE counters SET value = 0"))
        if db.dialect == "postgresql":
            await conn.execute(text("ALTER SEQUENCE incident_numbers RESTART"))
        for severity, values in DEFAULT_POLICIES.items():
            await conn.execute(
                text(
                    "UPDATE escalation_policies SET triage_within_seconds = :t, "
                    "level2_after_seconds = :l2, level3_after_seconds = :l3, "
                    "update_every_seconds = :u, updated_at = NULL, updated_by_id = NULL "
                    "WHERE severity = :s"
                ),
                {"s": severity, **values},
            )
    # Deleted behind the service's back: what the process kept from those rows goes too.
    caches.drop_all()


@pytest.fixture
async def db(shared_db: Database) -> AsyncIterator[Database]:
    try:
        yield shared_db
    finally:
        clock.reset()
        await clear_data(shared_db)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # Tokens are read on every request, so statement counts include the lookup on both
    # databases alike; tests/auth/test_token_cache.py turns the cache on.
    return Settings(
        env="test",
        database_url=database_url,
        scheduler="off",
        audit_key=SecretStr(TEST_AUDIT_KEY),
        principal_cache_seconds=0,
        # TEST_WORKERS processes share the server's 100 connections: 20 each at most, and
        # the tests that race many requests queue for a connection instead of being refused.
        db_pool_size=5,
        db_max_overflow=15,
    )


def rrg_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of an ``rrg`` subprocess on a test database."""
    return {
        **os.environ,
        "RRG_DATABASE_URL": database_url,
        "RRG_AUDIT_KEY": TEST_AUDIT_KEY,
        "PYTHONPATH": str(REPO_ROOT),
        **extra,
    }


async def run_rrg(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``rrg ARGS`` against a test database, in a subprocess (off the event loop)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", *args],
        env=rrg_env(database_url, **env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def app(db: Database, settings: Settings) -> Any:
    return create_app(settings, db=db)


@pytest.fixture
async def listening(app: Any, settings: Settings) -> AsyncIterator[None]:
    """The API process's listener of other processes' commits, connected (PostgreSQL)."""
    await start_live_updates(app, settings)
    deadline = time.monotonic() + 5
    while settings.database_url.startswith("postgresql") and not caches._listening:
        assert time.monotonic() < deadline, "the listener did not connect"
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        await stop_live_updates(app)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rrg.test") as c:
        yield c


@dataclass
class Actor:
    """A user with an API token, ready to call the API."""

    user: User
    token: str

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeActor = Callable[..., Awaitable[Actor]]


@pytest.fixture
def make_actor(db: Database) -> MakeActor:
    counter = iter(range(1_000_000))

    async def make(
        role: str = "viewer",
        ministry: str = "DOE",
        *,
        co_chair: bool = False,
        email: str | None = None,
        password: str | None = None,
    ) -> Actor:
        n = next(counter)
        async with db.unit_of_work() as session:
            user = await auth_service.create_user(
                session,
                UserCreate(
                    email=email or f"{role}{n}@{ministry.lower()}.example.org",
                    display_name=f"{ministry} {role} {n}",
                    ministry=ministry,
                    role=role,  # type: ignore[arg-type]
                    co_chair=co_chair,
                    password=password,
                ),
                by=None,
            )
            _, token = await auth_service.create_token(
                session, Principal(user=user), TokenCreate(name="test")
            )
        return Actor(user=user, token=token)

    return make


@dataclass
class QueryCounter:
    count: int = 0
    statements: list[str] | None = None

    @property
    def queries(self) -> list[str]:
        """The statements that read or write (not BEGIN, COMMIT, SAVEPOINT ...)."""
        control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
        return [s for s in self.statements or [] if not s.lstrip().upper().startswith(control)]


@pytest.fixture
def count_queries(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], QueryCounter]]:
    """Start counting SQL statements sent by the engine: ``counter = count_queries()``.
    A ``COPY`` sent on the driver connection (PostgreSQL bulk writes) counts as one."""
    counters: list[QueryCounter] = []

    def note(statement: str) -> None:
        for c in counters:
            c.count += 1
            assert c.statements is not None
            c.statements.append(statement)

    def on_execute(*args: Any) -> None:
        note(str(args[2]))

    copy = asyncpg.Connection.copy_records_to_table

    async def counted_copy(self: Any, table_name: str, **kwargs: Any) -> Any:
        note(f"COPY {table_name}")
        return await copy(self, table_name, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", counted_copy)
    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)

    def start() -> QueryCounter:
        counter = QueryCounter(0, [])
        counters.append(counter)
        return counter

    yield start
    event.remove(db.engine.sync_engine, "before_cursor_execute", on_execute)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["type"] and body["detail"]
    return body


def postgres_admin_url(database: str) -> str:
    """The configured PostgreSQL server, another database on it."""
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


REPO_ROOT = Path(__file__).resolve().parent.parent
