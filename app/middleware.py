"""ASGI middleware: the request body size limit, and each request's id, metrics and access log."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from asgi_correlation_id import correlation_id
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.logs import REQUEST_ID_HEADER, new_request_id, valid_request_id

access_log = logging.getLogger("rrg.access")
request_id_log = logging.getLogger("rrg.request_id")

TOO_LARGE = 413


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 problem, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside the app, so the problem+json handlers answer it.
                    raise HTTPException(TOO_LARGE, detail=self._detail)
            return message

        await self.app(scope, limited_receive, send)

    @property
    def _detail(self) -> str:
        return f"Request bodies are limited to {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": TOO_LARGE,
                "detail": self._detail,
            }
        ).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": TOO_LARGE, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RequestObserver:
    """Each request's id, latency and access log line, in one middleware (each layer of ASGI
    middleware costs every request a call and a wrapped ``send``):
    - the id (``X-Request-ID``): the client's when it is sane, else a new one; set for every
      log line inside the request and echoed in the response;
    - the latency, counted by method, route template and status;
    - one access log line, inside the request id's context (so the line carries it)."""

    QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._header = REQUEST_ID_HEADER.lower().encode("latin-1")
        # Labelled series by (method, route, status): a dictionary look-up per request
        # instead of the client library's locked one.
        self._durations: dict[tuple[str, str, str], Any] = {}

    def _request_id(self, scope: Scope) -> str:
        given = next((v for k, v in scope["headers"] if k == self._header), None)
        text: str | None = given.decode("latin-1") if given is not None else None
        if text and valid_request_id(text):
            return text
        rid = new_request_id()
        if text:
            request_id_log.warning("Replaced an unusable %s with %s", REQUEST_ID_HEADER, rid)
        # What the app reads as the request's id is the one it logs and answers with.
        kept = [(k, v) for k, v in scope["headers"] if k != self._header]
        scope["headers"] = [*kept, (self._header, rid.encode("latin-1"))]
        return rid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = self._request_id(scope)
        correlation_id.set(rid)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        echo = (self._header, rid.encode("latin-1"))
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped the app

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
            took = time.perf_counter() - started
            # The router leaves the matched route in the scope: its template is the label, so
            # /incidents/{id} is one series however many incidents there are.
            route = getattr(scope.get("route"), "path", None) or metrics.UNMATCHED_ROUTE
            method = scope["method"]
            key = (method, route, str(status))
            series = self._durations.get(key)
            if series is None:
                series = self._durations[key] = metrics.REQUEST_DURATION.labels(*key)
            series.observe(took)
            level = logging.DEBUG if route in self.QUIET_ROUTES and status < 500 else logging.INFO
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "%s %s %d",
                    method,
                    scope["path"],
                    status,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(took * 1000, 2),
                    },
                )
