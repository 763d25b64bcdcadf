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


async def test_wrong_method_lists_every_documented_method_of_the_path(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    viewer = await make_actor("viewer")
    response = await client.request("PUT", "/api/v1/incidents/RRG-0001", headers=viewer.headers)
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, PATCH, HEAD"
    actions = await client.delete("/api/v1/incidents/RRG-0001/actions", headers=viewer.headers)
    assert_problem(actions, 405)
    assert actions.headers["allow"] == "GET, POST, HEAD"


async def test_a_missing_if_match_is_428_even_beside_a_valid_body(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead")
    missing = await client.patch(
        "/api/v1/incidents/RRG-0001", json={"title": "x"}, headers=lead.headers
    )
    assert assert_problem(missing, 428)["type"] == "urn:rrg:problem:precondition-required"
    # With other faults too, it is one 422 naming all of them.
    both = await client.patch("/api/v1/incidents/RRG-0001", json={"title": 7}, headers=lead.headers)
    fields = {(e["location"], e["field"]) for e in assert_problem(both, 422)["errors"]}
    assert fields == {("header", "If-Match"), ("body", "title")}
