"""Real processes on loopback for the operations tests: fresh PostgreSQL databases, ``rrg``
servers and workers started and stopped (or killed) like an operator would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.db import Database
from tests.conftest import POSTGRES_URL, REPO_ROOT, TEST_AUDIT_KEY, postgres_admin_url

RRG = [sys.executable, "-m", "app"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scratch_database_name(suffix: str) -> str:
    """A database beside the test database (named after it, so parallel runs on other test
    databases never collide)."""
    return f"{make_url(POSTGRES_URL).database}_{suffix}"


async def recreate_database(name: str) -> str:
    """An empty database ``name`` (dropped first if it exists); its URL."""
    db = Database(postgres_admin_url("postgres"))
    try:
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await db.dispose()
    return postgres_admin_url(name)


async def drop_database(name: str) -> None:
    db = Database(postgres_admin_url("postgres"))
    try:
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await db.dispose()


def rrg_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "RRG_DATABASE_URL": database_url,
        "RRG_AUDIT_KEY": TEST_AUDIT_KEY,
        "PYTHONPATH": str(REPO_ROOT),
        **extra,
    }


class Process:
    """An ``rrg`` process whose output goes to a file (read after it ends)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.log = args, log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [*RRG, *args], env=env, cwd=REPO_ROOT, stdout=self._out, stderr=subprocess.STDOUT
        )

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    async def wait(self, within: float = 60) -> int:
        code = await asyncio.to_thread(self.popen.wait, within)
        self._out.close()
        return code

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")


class Server(Process):
    """``rrg serve`` on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(["serve", "--port", str(self.port)], env, log)
        self.base = f"http://127.0.0.1:{self.port}"

    async def ready(self, within: float = 30) -> None:
        await wait_until_up(self.base + "/readyz", within, self)


async def wait_until_up(url: str, within: float, process: Process | None = None) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            if process is not None and process.popen.poll() is not None:
                raise AssertionError(f"{process.args} exited early:\n{process.output()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not up within {within}s")


async def run_rrg_cli(database_url: str, *args: str, stdin: str | None = None) -> Any:
    return await asyncio.to_thread(
        subprocess.run,
        [*RRG, *args],
        env=rrg_env(database_url),
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TcpProxy:
    """A loopback TCP proxy to the PostgreSQL server that a test can cut (closing every
    connection and refusing new ones) and restore: the database becomes unreachable for
    whoever connects through it, and nobody else."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, database_url: str) -> str:
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
