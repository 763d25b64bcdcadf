from __future__ import annotations

import json
import uuid
from typing import Any

from app.config import Settings
from app.deps import CurrentUser, IfMatchRequired
from app.idempotency import Idempotent
from app.kit.types import TIMESTAMP_PATTERN
from app.main import create_app
from app.sitrep.router import AT_SCHEMA
from tests.conftest import REPO_ROOT


def test_committed_contract_matches_the_app():
    committed = json.loads((REPO_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8"))
    current = create_app(Settings(env="test")).openapi()
    assert committed == current, "openapi/openapi.json is stale: run `make openapi`"


def test_operation_ids_are_clean_and_unique():
    spec = create_app(Settings(env="test")).openapi()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert all(i.isidentifier() and i == i.lower() for i in ids), ids
    assert "get_me" in ids and "create_user" in ids


# --- the contract tells the truth ----------------------------------------------------

PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _contract() -> dict[str, Any]:
    spec: dict[str, Any] = create_app(Settings(env="test")).openapi()
    return spec


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, m, op) for path, item in spec["paths"].items() for m, op in item.items()]


def test_every_error_response_is_a_problem_with_the_one_shared_schema():
    spec = _contract()
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert problem["properties"]["errors"]["type"] == "array"
    assert problem["properties"]["unmet"]["type"] == "array"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, op in _operations(spec):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                assert response.get("content") == PROBLEM_CONTENT, (path, method, status)
            elif status == "204":
                assert "content" not in response, (path, method)
            else:
                # JSON, or for the situation report Markdown too (both documented).
                assert set(response.get("content", {})) <= {"application/json", "text/markdown"}


def test_each_operation_declares_the_problems_its_route_can_give():
    checked = 0
    for path, method, op in _operations(_contract()):
        declared = set(op["responses"])
        params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        expected: set[str] = set()
        if op.get("security"):
            expected |= {"401", "403"}
        if any(place == "path" for place, _ in params):
            expected |= {"404", "422"}
        if params:
            expected.add("422")
        if "requestBody" in op:
            expected |= {"400", "413", "422"}
        if_match = params.get(("header", "If-Match"))
        if if_match:
            expected |= {"412", "428"} if if_match["required"] else {"412"}
        if ("header", "Idempotency-Key") in params:
            expected |= {"409", "422"}
        assert expected <= declared, (method, path, sorted(expected - declared))
        checked += 1
    assert checked >= 30


def test_creating_posts_take_an_idempotency_key_and_changes_a_required_if_match():
    ops = {(m, p): op for p, m, op in _operations(_contract())}

    def headers(method: str, path: str) -> dict[str, bool]:
        params = ops[(method, path)].get("parameters", [])
        return {p["name"]: p["required"] for p in params if p["in"] == "header"}

    for path in (
        "/api/v1/incidents",
        "/api/v1/incidents/{id_or_key}/actions",
        "/api/v1/incidents/{id_or_key}/comments",
        "/api/v1/incidents/{id_or_key}/participants",
        "/api/v1/incidents/{id_or_key}/signoffs",
        "/api/v1/tokens",
        "/api/v1/users",
    ):
        assert headers("post", path).get("Idempotency-Key") is False, path
    for method, path in (
        ("patch", "/api/v1/incidents/{id_or_key}"),
        ("post", "/api/v1/incidents/{id_or_key}/transitions"),
        ("patch", "/api/v1/actions/{action_id}"),
        ("post", "/api/v1/actions/{action_id}/transitions"),
    ):
        assert headers(method, path).get("If-Match") is True, (method, path)
    transition = ops[("post", "/api/v1/incidents/{id_or_key}/transitions")]
    assert "unmet" in transition["responses"]["409"]["description"]


NARROWER_TIMES = {"get /api/v1/sitrep.schema": str(AT_SCHEMA["pattern"])}


def test_every_time_the_api_accepts_is_documented_as_aware_and_in_range():
    spec = _contract()
    found: list[str] = []

    def visit(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("format") == "date-time":
                found.append(where)
                # A time with a narrower range of its own documents that range instead.
                narrowed = NARROWER_TIMES.get(where)
                assert node.get("pattern") == (narrowed or TIMESTAMP_PATTERN), where
                assert "UTC offset" in node["description"]
                assert (narrowed and "2000 to 2099" in node["description"]) or (
                    "1900" in node["description"]
                ), where
            for key, value in node.items():
                visit(value, f"{where}.{key}")
        elif isinstance(node, list):
            for item in node:
                visit(item, where)

    for path, method, op in _operations(spec):
        visit(op.get("parameters", []), f"{method} {path}")
    for name, schema in spec["components"]["schemas"].items():
        if name.endswith(("Create", "Update", "Add", "Request", "In")) or name == "Source":
            visit(schema, name)
    for expected in ("reported_after", "reported_before", "due_before"):
        assert any(expected in json.dumps(op) for _, _, op in _operations(spec))
    assert len(found) >= 8, found


def test_a_new_endpoint_gets_its_problem_responses_from_its_signature():
    app = create_app(Settings(env="test"))

    @app.post("/api/v1/widgets/{widget_id}", status_code=201)
    async def create_widget(
        widget_id: uuid.UUID, _: CurrentUser, if_match: IfMatchRequired, idem: Idempotent
    ) -> dict[str, str]:
        return {}

    app.openapi_schema = None
    responses = app.openapi()["paths"]["/api/v1/widgets/{widget_id}"]["post"]["responses"]
    assert set(responses) == {"201", "401", "403", "404", "409", "412", "422", "428"}
    assert all(responses[s]["content"] == PROBLEM_CONTENT for s in responses if s != "201")
