"""Logs: JSON lines with the request id on every line of a request (echoed in
X-Request-ID), and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.db import Database
from app.logs import configure_logging, formatter
from app.webhooks.dispatcher import Dispatcher
from tests.conftest import MakeActor
from tests.webhooks.helpers import emit, escalated, incident, subscribe
from tests.webhooks.receiver import Receiver


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def captured_logs() -> Iterator[Captured]:
    """Every logger of the process, at DEBUG, through the production JSON formatter (SQL
    statements and their parameters included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sql = logging.getLogger("sqlalchemy.engine")
    sql.setLevel(logging.INFO)  # statements and parameters
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        sql.setLevel(logging.WARNING)


async def test_no_password_token_secret_or_cookie_in_any_log_line(
    captured_logs: Captured,
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    admin = await make_actor("admin", "DOE")
    secrets: list[str] = [admin.token]
    cookie = "rrg_session=s3ss10n-c00k13-value-that-must-not-leak"
    secrets.append(cookie.split("=", 1)[1])
    headers = {**admin.headers, "Cookie": cookie}

    # A user with a password, and a sign-in's worth of wrong and right credentials.
    password = "correct horse battery staple 42"
    secrets.append(password)
    created = await client.post(
        "/api/v1/users",
        json={
            "email": "new.lead@doe.example.gov",
            "display_name": "New Lead",
            "ministry": "DOE",
            "role": "lead",
            "password": password,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    wrong = "rrg_" + "x" * 43
    secrets.append(wrong)
    assert (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {wrong}"})
    ).status_code == 401
    assert (
        await client.get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNzd29yZA=="})
    ).status_code == 401
    secrets.append("dXNlcjpwYXNzd29yZA==")

    # A token created through the API (shown once) and used.
    token = await client.post(
        "/api/v1/tokens",
        json={"name": "ops"},
        headers={**headers, "Idempotency-Key": "tok-1"},
    )
    assert token.status_code == 201, token.text
    new_token = token.json()["token"]
    secrets.append(new_token)
    assert (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_token}"})
    ).status_code == 200

    # A webhook subscription, its secret rotated, deliveries signed with both.
    sub = await subscribe(client, admin, receiver.url("/hook"))
    secrets.append(sub["secret"])
    rotated = await client.post(
        f"/api/v1/webhooks/subscriptions/{sub['id']}/rotate-secret", headers=headers
    )
    assert rotated.status_code == 200, rotated.text
    secrets.append(rotated.json()["secret"])
    receiver.trust("/hook", rotated.json()["secret"])
    found = await incident(client, admin)
    await emit(db, escalated(found["id"]))
    assert await dispatcher.drain() == 1
    (delivered,) = receiver.at("/hook")
    secrets.append(delivered.headers["webhook-signature"].split(" ")[0].split(",", 1)[1])

    text = captured_logs.text
    assert len(captured_logs.lines()) > 50  # the capture saw the requests and the SQL
    assert "INSERT INTO users" in text and "webhook" in text
    for secret in secrets:
        assert secret not in text, f"a secret leaked into the logs: {secret[:8]}…"


def test_a_line_that_names_a_secret_is_masked(captured_logs: Captured):
    token, secret = "rrg_" + "k" * 43, "whsec_" + "c2VjcmV0" * 4
    logging.getLogger("rrg.test").warning(
        "careless: %s %s Authorization: Bearer abcdefgh12345678 Cookie: rrg_session=s3cr3t",
        token,
        secret,
        extra={"password": "hunter2hunter2", "headers": {"authorization": "Basic eDp5"}},
    )
    (line,) = captured_logs.lines()
    for leaked in (token, secret, "abcdefgh12345678", "s3cr3t", "hunter2hunter2", "eDp5"):
        assert leaked not in captured_logs.text
    assert line["password"] == "[redacted]"
    assert line["headers"] == {"authorization": "[redacted]"}
    assert "rrg_[redacted]" in line["event"] and "whsec_[redacted]" in line["event"]


async def test_every_line_of_a_request_carries_its_id(
    captured_logs: Captured, client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead", "DOE")
    given = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.post(
        "/api/v1/incidents",
        json={"title": "Gallium"},  # refused: 422, with a log line of its own
        headers={**lead.headers, "X-Request-ID": given},
    )
    assert response.status_code == 422
    assert response.headers["X-Request-ID"] == given
    lines = captured_logs.lines()
    mine = [line for line in lines if line.get("request_id") == given]
    (access,) = [line for line in mine if line["logger"] == "rrg.access"]
    assert access["route"] == "/api/v1/incidents" and access["status"] == 422
    assert access["level"] == "info" and "timestamp" in access and "duration_ms" in access
    # The request's SQL (the token lookup) logged inside it carries the id.
    assert any(line["logger"].startswith("sqlalchemy.engine") for line in mine)

    # An insane id (too long, or not a token) is replaced by a generated one, still echoed.
    for bad in ("x" * 300, "a b", "<script>"):
        other = await client.get("/api/v1/me", headers={**lead.headers, "X-Request-ID": bad})
        echoed = other.headers["X-Request-ID"]
        assert echoed != bad and len(echoed) == 32
        assert any(line.get("request_id") == echoed for line in captured_logs.lines())
    fresh = await client.get("/api/v1/me", headers=lead.headers)
    assert len(fresh.headers["X-Request-ID"]) == 32


def test_configure_logging_writes_json_lines(capsys: pytest.CaptureFixture[str]):
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        configure_logging("INFO", "json")
        logging.getLogger("rrg.test").info("hello %s", "world", extra={"n": 3})
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["event"] == "hello world" and line["n"] == 3 and line["level"] == "info"
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
