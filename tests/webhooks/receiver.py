"""A webhook receiver on loopback: a small ASGI app served by uvicorn in a thread of its own.

It records every request, checks its Standard Webhooks signature with the reference library
(``standardwebhooks``, independent of the service's signer) against the secrets registered
for its path, and answers as each test scripts it (status, headers, body, delay).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# standardwebhooks checks the timestamp against the wall clock (5 minutes either way).
TOLERANCE = 240


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    # With a delay: answer as soon as this many requests are in flight at once (0: never early).
    # Lets a test see the sender's concurrency limit reached without relying on timing.
    until_in_flight: int = 0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    verified_by: list[str]  # names of the registered secrets whose signature matched

    @property
    def msg_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether the reference library accepts the signature. When the service's clock was
    moved far from the wall clock, the library's timestamp check would refuse any message,
    so the signature is then compared with the library's own ``sign`` for that timestamp."""
    webhook = Webhook(secret)
    try:
        timestamp = int(headers["webhook-timestamp"])
        if abs(timestamp - time.time()) < TOLERANCE:
            webhook.verify(body, headers)
            return True
        expected = webhook.sign(
            headers["webhook-id"], datetime.fromtimestamp(timestamp, tz=UTC), body.decode()
        )
        return expected in headers["webhook-signature"].split(" ")
    # A malformed signature header raises ValueError in standardwebhooks 1.1.
    except (WebhookVerificationError, ValueError, KeyError):
        return False


class Receiver:
    def __init__(self, *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None) -> None:
        self.requests: list[Received] = []
        self.secrets: dict[str, dict[str, str]] = defaultdict(dict)
        self.replies: dict[str, list[Reply]] = {}
        # Requests being answered now, and the most at once (per path and overall).
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0
        # Bumped by ``reset``: a request still held from an earlier test (its sender gave up)
        # must not count down this test's counters when it ends.
        self._generation = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.scheme = "https" if ssl_certfile else "http"
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            interface="asgi3",
            log_level="error",
            access_log=False,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            timeout_keep_alive=30,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> Receiver:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.secrets.clear()
            self.replies.clear()
            self.active.clear()
            self.peak.clear()
            self.peak_total = 0
            self._generation += 1

    def trust(self, path: str, secret: str, name: str = "current") -> None:
        """Verify requests to ``path`` against ``secret`` (recorded under ``name``)."""
        self.secrets[path][name] = secret

    def script(self, path: str, *replies: Reply) -> None:
        """Answer requests to ``path`` with these replies in turn; the last one repeats."""
        self.replies[path] = list(replies)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    async def wait_for(self, count: int, path: str | None = None, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while len(self.at(path) if path else self.requests) < count:
            if time.monotonic() > deadline:
                seen = len(self.at(path) if path else self.requests)
                raise AssertionError(f"expected {count} requests, got {seen}")
            await asyncio.sleep(0.01)

    async def _hold(self, reply: Reply) -> None:
        deadline = time.monotonic() + reply.delay
        while time.monotonic() < deadline:
            if reply.until_in_flight and self.peak_total >= reply.until_in_flight:
                # The limit was reached: let the rest of the wave finish promptly.
                await asyncio.sleep(0.05)
                return
            await asyncio.sleep(0.01)

    def _reply(self, path: str) -> Reply:
        with self._lock:
            queue = self.replies.get(path)
            if not queue:
                return Reply()
            return queue.pop(0) if len(queue) > 1 else queue[0]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-request (e.g. killed): nothing arrived
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        verified = [
            name
            for name, secret in list(self.secrets.get(path, {}).items())
            if verifies(secret, headers, body)
        ]
        with self._lock:
            generation = self._generation
            self.requests.append(Received(path, headers, body, time.monotonic(), verified))
            self.active[path] += 1
            self.peak[path] = max(self.peak[path], self.active[path])
            self.peak_total = max(self.peak_total, sum(self.active.values()))
        reply = self._reply(path)
        try:
            if reply.delay:
                await self._hold(reply)
        finally:
            with self._lock:
                if generation == self._generation:
                    self.active[path] -= 1
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})
