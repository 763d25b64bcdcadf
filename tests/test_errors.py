from __future__ import annotations

import logging

import httpx
import pytest

from tests.conftest import MakeActor, assert_problem


async def test_unknown_path_is_404_problem(client: httpx.AsyncClient):
    assert_problem(await client.get("/api/v1/nowhere"), 404)


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient):
    assert_problem(await client.delete("/healthz"), 405)


async def test_body_over_one_mebibyte_is_413(client: httpx.AsyncClient, make_actor: MakeActor):
    admin = await make_actor("admin")
    big = b'{"email": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/api/v1/users", content=big, headers={**admin.headers, "content-type": "application/json"}
    )
    assert_problem(response, 413)


async def test_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin = await make_actor("admin")

    async def chunks():
        for _ in range(40):
            yield b"x" * 65536

    response = await client.post(
        "/api/v1/users",
        content=chunks(),
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert_problem(response, 413)


async def test_unhandled_error_is_500_problem_without_internals(
    app, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
):
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal state 42")

    response = await client.get("/boom")
    body = assert_problem(response, 500)
    assert "secret internal state" not in response.text
    assert "Traceback" not in response.text and body["type"] == "about:blank"
    assert any(
        r.levelno == logging.ERROR
        and r.exc_info
        and "secret internal state 42" in str(r.exc_info[1])
        for r in caplog.records
    )


async def test_healthz_needs_no_auth_and_readyz_checks_migrations(app, client: httpx.AsyncClient):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["migration"] == app.state.migration_head
    app.state.migration_head = "some-future-revision"
    assert_problem(await client.get("/readyz"), 503)
