from __future__ import annotations

import json

from app.config import Settings
from app.main import create_app
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
