"""The rrg command, run as a user would run it (in a subprocess)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_URL, postgres_admin_url

RRG = [sys.executable, "-m", "app"]


def run(args: list[str], env: dict[str, str], stdin: str | None = None, cwd: Path | None = None):
    return subprocess.run(
        [*RRG, *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"RRG_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PYTHONPATH": os.getcwd()}


def test_users_and_tokens_from_the_command_line(sqlite_env: dict[str, str], tmp_path: Path):
    assert run(["migrate"], sqlite_env).returncode == 0
    created = run(
        [
            "users",
            "create",
            "--email",
            "Chief@DOE.example.gov",
            "--name",
            "Chief",
            "--ministry",
            "DOE",
            "--role",
            "admin",
            "--co-chair",
            "--password-stdin",
        ],
        sqlite_env,
        stdin="a very long password\n",
    )
    assert created.returncode == 0, created.stderr
    assert "chief@doe.example.gov" in created.stdout and "admin" in created.stdout
    assert "a very long password" not in created.stdout + created.stderr
    duplicate = run(
        ["users", "create", "--email", "chief@doe.example.gov", "--name", "x", "--ministry", "DOE"],
        sqlite_env,
    )
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    bad_role = run(
        [
            "users",
            "create",
            "--email",
            "x@y.org",
            "--name",
            "x",
            "--ministry",
            "DOE",
            "--role",
            "king",
        ],
        sqlite_env,
    )
    assert bad_role.returncode == 1 and "role" in bad_role.stderr
    token = run(
        ["tokens", "create", "--email", "chief@doe.example.gov", "--name", "ops"], sqlite_env
    )
    assert token.returncode == 0
    plaintext = token.stdout.strip()
    assert plaintext.startswith("rrg_")
    missing = run(["tokens", "create", "--email", "nobody@x.org", "--name", "ops"], sqlite_env)
    assert missing.returncode == 1

    port = free_port()
    server = subprocess.Popen(
        [*RRG, "serve", "--port", str(port)],
        env={**os.environ, **sqlite_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {plaintext}"})
        assert me.status_code == 200 and me.json()["co_chair"] is True
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    assert plaintext not in output


def test_demo_seeds_an_empty_database_once(sqlite_env: dict[str, str], tmp_path: Path):
    assert run(["migrate"], sqlite_env, cwd=tmp_path).returncode == 0
    first = run(["demo"], sqlite_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stdout.splitlines() if "@" in line]
    assert len(lines) == 8  # each role in each co-lead ministry
    assert {line.split("@")[1].split(".")[0] for line in lines} == {"doe", "meti"}
    again = run(["demo"], sqlite_env, cwd=tmp_path)
    assert again.returncode == 0 and "first run" in again.stdout
    assert [line for line in again.stdout.splitlines() if "@" in line] == lines

    # The scenario: incidents in many states, actions in every state, some overdue,
    # and every timeline chain intact.
    import sqlite3

    db = sqlite3.connect(sqlite_env["RRG_DATABASE_URL"].removeprefix("sqlite:///"))
    incident_states = {row[0] for row in db.execute("SELECT DISTINCT status FROM incidents")}
    assert incident_states >= {
        "watch",
        "reported",
        "responding",
        "monitoring",
        "resolved",
        "closed",
        "rejected",
    }
    action_states = {row[0] for row in db.execute("SELECT DISTINCT status FROM actions")}
    assert action_states == {
        "proposed",
        "approved",
        "in_progress",
        "blocked",
        "completed",
        "rejected",
        "cancelled",
    }
    overdue = db.execute(
        "SELECT count(*) FROM actions WHERE status NOT IN ('completed', 'rejected', 'cancelled')"
        " AND due_at < datetime('now')"
    ).fetchone()[0]
    assert overdue >= 2
    owned = db.execute(
        "SELECT count(*) FROM incidents"
        " WHERE doe_owner_id IS NOT NULL AND meti_owner_id IS NOT NULL"
    ).fetchone()[0]
    assert owned >= 5
    comments = db.execute("SELECT count(*) FROM timeline_events WHERE type = 'comment.created'")
    assert comments.fetchone()[0] >= 2
    db.close()
    verified = run(["audit", "verify"], sqlite_env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_openapi_command_writes_the_contract(tmp_path: Path, sqlite_env: dict[str, str]):
    out = tmp_path / "openapi.json"
    assert run(["openapi", "--output", str(out)], sqlite_env).returncode == 0
    assert '"/api/v1/me"' in out.read_text()


@pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL")
def test_serve_refuses_a_postgres_database_behind_its_migrations():
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from app.db import Database

    # Named after the test database, so test runs against different databases don't collide.
    behind = f"{make_url(POSTGRES_URL).database}_behind"

    async def recreate() -> None:
        db = Database(postgres_admin_url("postgres"))
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{behind}"'))
            await conn.execute(text(f'CREATE DATABASE "{behind}"'))
        await db.dispose()

    asyncio.run(recreate())
    env = {"RRG_DATABASE_URL": postgres_admin_url(behind)}
    refused = run(["serve", "--port", str(free_port())], env)
    assert refused.returncode == 1
    assert "rrg migrate" in refused.stderr
