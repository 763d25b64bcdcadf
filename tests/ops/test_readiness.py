"""/readyz and the database: 503 while the database is unreachable or behind its
migrations, 200 again once it is back, without restarting anything; /healthz never asks
the database."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.revisions import head_revision
from tests.conftest import MakeActor, assert_problem
from tests.ops.helpers import TcpProxy
from tests.webhooks.helpers import incident


@pytest.mark.postgresql_only  # the database is a separate server only on PostgreSQL
async def test_readyz_is_503_while_the_database_is_unreachable_and_200_after(
    settings: Settings, db: Database, make_actor: MakeActor
):
    target = make_url(settings.database_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = proxy.url(settings.database_url)
    through = Database(url, audit_key=settings.audit_key_bytes())
    app = create_app(settings.model_copy(update={"database_url": url}), db=through)
    lead = await make_actor("lead", "DOE")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://rrg.test") as client:
            assert (await client.get("/readyz")).status_code == 200
            await incident(client, lead)

            await proxy.cut()
            body = assert_problem(await client.get("/readyz"), 503)
            assert "unreachable" in body["detail"]
            assert (await client.get("/healthz")).status_code == 200
            # Requests that need it are refused as retryable, not as a server fault.
            refused = await client.get("/api/v1/incidents", headers=lead.headers)
            assert_problem(refused, 503)
            assert refused.headers["Retry-After"] == "1"

            await proxy.start()  # the database is back: the same app recovers
            assert (await client.get("/readyz")).status_code == 200
            listed = await client.get("/api/v1/incidents", headers=lead.headers)
            assert listed.status_code == 200 and len(listed.json()["items"]) == 1
            await incident(client, lead)
    finally:
        await proxy.cut()
        await through.dispose()


async def test_readyz_refuses_a_schema_behind_the_code_but_not_one_ahead(
    client: httpx.AsyncClient, db: Database
):
    head = head_revision()

    async def stamp(revision: str) -> None:
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})

    try:
        await stamp("cea00e19ebcc")  # an older revision this code knows: behind
        body = assert_problem(await client.get("/readyz"), 503)
        assert "rrg migrate" in body["detail"] and head in body["detail"]
        # A revision this code does not know is a newer release's (migrated first during a
        # rolling upgrade): the replicas still on this release keep serving.
        await stamp("0a1b2c3d4e5f")
        assert (await client.get("/readyz")).status_code == 200
    finally:
        await stamp(head)
    assert (await client.get("/readyz")).json()["migration"] == head
