"""The OpenAPI contract: every operation's problem responses, derived from its route.

What a route can refuse follows from its signature, as the generated operation shows it:
credentials give 401 and 403, a path parameter 404, any parameter 422, a body 400, 413
and 422, an ``If-Match`` header 412 (and 428 when required), an ``Idempotency-Key`` 409
and 422. A route declares by hand only
what its signature cannot say (a 409 for a refused state change). All of them are
``application/problem+json`` with the one shared ``Problem`` schema, so a new endpoint
is documented truthfully without anyone remembering to.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema

from app.errors import PROBLEM_JSON, PROBLEM_SCHEMA_REF, Problem, problem

DESCRIPTION = """\
Conventions (SPEC §8): JSON under `/api/v1`; `Authorization: Bearer rrg_...` on everything
but the health checks. Every 4xx and 5xx is `application/problem+json` (the `Problem`
schema): `errors` names each invalid field, `unmet` lists every unmet guard of a refused
transition.

Input: unknown fields are refused at every level; text never holds a NUL character
(U+0000); numbers are finite (no NaN or Infinity) and integers fit in 64 bits (or less,
as each field states); every time carries a UTC offset and lies in the years 1900 to
2099; times are returned in UTC. Bodies over 1 MiB are refused (413).

Single resources carry a strong `ETag`; `If-Match` takes `*` or a list of strong tags
(a weak tag never matches). Creating endpoints accept `Idempotency-Key`.
"""

UNAUTHORIZED = "No valid bearer token"
FORBIDDEN = "Your role or position does not allow this"
NOT_FOUND = "No such resource, or one you may not see"
UNPARSEABLE = "The body is not valid JSON"
TOO_LARGE = "The body is larger than the limit (1 MiB)"
INVALID = "Invalid input: `errors` names each field and why"
STALE = "If-Match does not match the current version"
PRECONDITION_MISSING = "If-Match is missing"
NO_PRECONDITION = "Neither If-Match (to change it) nor If-None-Match: * (to create it) was sent"
IN_FLIGHT = "A request with this Idempotency-Key is still in progress"
KEY_REUSED = "Idempotency-Key reused with a different body"


def problem_statuses(operation: dict[str, Any]) -> dict[int, list[str]]:
    """The problem responses an operation can give, each with its causes, read from what
    its route takes: credentials, path and query parameters, headers, a body."""
    statuses: dict[int, list[str]] = {}

    def add(status: int, why: str) -> None:
        causes = statuses.setdefault(status, [])
        if why not in causes:
            causes.append(why)

    if operation.get("security"):
        add(401, UNAUTHORIZED)
        add(403, FORBIDDEN)
    for parameter in operation.get("parameters", []):
        place, name = parameter["in"], parameter["name"].lower()
        if place == "path":
            add(404, NOT_FOUND)
        if place == "header" and name == "if-match":
            add(412, STALE)
            if parameter.get("required"):
                add(428, PRECONDITION_MISSING)
        if place == "header" and name == "if-none-match":
            # A PUT that may create: If-Match to change it, If-None-Match: * to create it.
            add(412, STALE)
            add(428, NO_PRECONDITION)
        if place == "header" and name == "idempotency-key":
            add(409, IN_FLIGHT)
            add(422, KEY_REUSED)
        else:
            add(422, INVALID)
    if "requestBody" in operation:
        add(400, UNPARSEABLE)
        add(413, TOO_LARGE)
        add(422, INVALID)
    return statuses


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA_REF}}


def _document(schema: dict[str, Any]) -> dict[str, Any]:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses: dict[str, Any] = operation["responses"]
            for status, causes in sorted(problem_statuses(operation).items()):
                key = str(status)
                # A route's own description of a status (its 409) comes first.
                declared = responses.get(key, {}).get("description")
                own = [declared] if declared and key != "422" else []
                responses[key] = {"description": "; or ".join([*own, *causes])}
            for key, entry in responses.items():
                if key.startswith(("4", "5")):
                    entry["content"] = _problem_content()
                elif key == "204":
                    entry.pop("content", None)
            operation["responses"] = dict(sorted(responses.items()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    _, definitions = models_json_schema(
        [(Problem, "serialization")], ref_template="#/components/schemas/{model}"
    )
    components.update(definitions.get("$defs", {}))
    return schema


def _path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


def install_contract(app: FastAPI) -> None:
    """Make ``app.openapi()`` (served at /openapi.json, written by ``rrg openapi``) the
    contract with every operation's problem responses, and answer a wrong method with
    the ``Allow`` header the contract documents for that path."""

    def contract() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = contract  # type: ignore[method-assign]
    paths: list[tuple[re.Pattern[str], list[str]]] = []

    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        if not paths:
            paths.extend(
                (_path_pattern(path), sorted(m.upper() for m in item))
                for path, item in contract()["paths"].items()
            )
        allowed = sorted(
            {m for pattern, methods in paths if pattern.match(request.url.path) for m in methods}
        )
        if "GET" in allowed:
            allowed.append("HEAD")
        return problem(
            405,
            detail=f"{request.method} is not allowed here",
            headers={"Allow": ", ".join(allowed)},
        )

    app.add_exception_handler(405, method_not_allowed)
