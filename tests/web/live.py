"""A real server on loopback (``rrg serve``, uvicorn) against the test database."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, Actor, rrg_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of ``rrg serve`` on a free loopback port (scheduler off)."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("live")) / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=rrg_env(database_url, RRG_SCHEDULER="off", RRG_ENV="test"),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start:\n" + log.read_text())
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


async def sse_clients(base: str, admin: Actor) -> float:
    """The server's ``rrg_sse_clients`` gauge: its connected event streams."""
    async with httpx.AsyncClient(base_url=base, headers=admin.headers) as api:
        response = await api.get("/metrics")
        assert response.status_code == 200
    found = re.search(r"^rrg_sse_clients (\S+)$", response.text, re.M)
    assert found, "rrg_sse_clients is not exported"
    return float(found.group(1))


async def sse_clients_reach(base: str, admin: Actor, value: float) -> None:
    for _ in range(100):
        if await sse_clients(base, admin) == value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"rrg_sse_clients stayed at {await sse_clients(base, admin)}")
