"""A multi-replica deployment on this machine without containers (``make cluster``):
several ``rrg serve`` replicas and ``rrg worker`` processes on loopback ports against one
PostgreSQL database. The reliability suite (``make soak``) drives the same class.

    python -m deploy.cluster [--replicas 3] [--workers 1] [--port 8100] [--demo]

Each replica runs ``rrg migrate`` first, all at once, as replicas of a rolling deployment
would (the advisory lock lets one upgrade and the others find the schema at head).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/rrg_cluster"
# Development keys: a cluster on loopback is for trying the deployment out, not for data.
DEV_ENV = {
    "RRG_SECRET_KEY": "cluster-secret-key-for-loopback-use-only-0001",
    "RRG_AUDIT_KEY": "cluster-audit-key-for-loopback-use-only-00002",
    "RRG_METRICS_TOKEN": "cluster-metrics-token-loopback",
    "RRG_LOG_FORMAT": "json",
}


@dataclass
class Member:
    """One process of the cluster."""

    name: str
    args: list[str]
    port: int
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "app", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    async def ready(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.popen is not None and self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early; see {self.log}")
                try:
                    if (await client.get(self.base + "/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {within}s; see {self.log}")

    async def stop(self, within: float = 30) -> int | None:
        """SIGTERM, then wait (SIGKILL after ``within``); the exit status."""
        if self.popen is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.popen.wait, within)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.returncode


@dataclass
class Cluster:
    database_url: str
    replicas: int = 3
    workers: int = 1
    base_port: int = 8100
    log_dir: Path = field(default_factory=lambda: ROOT / "var" / "cluster")
    env: dict[str, str] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **DEV_ENV, "PYTHONPATH": str(ROOT), **self.env}
        env["RRG_DATABASE_URL"] = self.database_url
        self.env = env
        for i in range(self.replicas):
            port = self.base_port + i
            self.members.append(
                Member(
                    f"api-{i + 1}",
                    ["serve", "--port", str(port)],
                    port,
                    env,
                    self.log_dir / f"api-{i + 1}.log",
                )
            )
        for i in range(self.workers):
            port = self.base_port + 100 + i
            self.members.append(
                Member(
                    f"worker-{i + 1}",
                    ["worker", "--port", str(port)],
                    port,
                    env,
                    self.log_dir / f"worker-{i + 1}.log",
                )
            )

    @property
    def api(self) -> list[Member]:
        return [m for m in self.members if m.name.startswith("api-")]

    @property
    def worker(self) -> list[Member]:
        return [m for m in self.members if m.name.startswith("worker-")]

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    async def migrate(self, concurrently: int | None = None) -> None:
        """``rrg migrate`` from every replica at once."""
        n = concurrently or max(1, self.replicas)

        def one() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "app", "migrate"],
                env=self.env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )

        results = await asyncio.gather(*(asyncio.to_thread(one) for _ in range(n)))
        for result in results:
            if result.returncode != 0:
                raise RuntimeError(f"rrg migrate failed:\n{result.stdout}{result.stderr}")

    async def start(self) -> None:
        for member in self.members:
            member.start()
        await asyncio.gather(*(m.ready() for m in self.members))

    async def restart(self, name: str) -> None:
        member = self.member(name)
        member.start()
        await member.ready()

    async def stop(self) -> dict[str, int | None]:
        codes = await asyncio.gather(*(m.stop() for m in self.members))
        return {m.name: code for m, code in zip(self.members, codes, strict=True)}


async def ensure_database(database_url: str) -> None:
    """Create the database if the server does not have it yet."""
    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", url.database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{url.database}"')
    finally:
        await conn.close()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("RRG_CLUSTER_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8100, help="first replica's port")
    parser.add_argument("--demo", action="store_true", help="load the demo data (empty database)")
    parser.add_argument(
        "--scheduler",
        choices=("on", "off"),
        default="off",
        help="background work on the API replicas too (the workers always run it)",
    )
    args = parser.parse_args(argv)
    await ensure_database(args.database_url)
    cluster = Cluster(
        args.database_url,
        replicas=args.replicas,
        workers=args.workers,
        base_port=args.port,
        env={"RRG_SCHEDULER": args.scheduler},
    )
    await cluster.migrate()
    if args.demo:
        demo = [sys.executable, "-m", "app", "demo"]
        await asyncio.to_thread(subprocess.run, demo, env=cluster.env, cwd=ROOT, check=True)
    await cluster.start()
    for member in cluster.members:
        print(f"{member.name:10} {member.base}   log: {member.log}", flush=True)
    print(
        f"metrics: curl -H 'Authorization: Bearer {DEV_ENV['RRG_METRICS_TOKEN']}' "
        f"{cluster.api[0].base}/metrics",
        flush=True,
    )
    print("Ctrl-C stops the cluster.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for name, code in (await cluster.stop()).items():
        print(f"{name} exited with {code}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
