"""deploy/compose.yaml has the shape deploy/README.md describes, configured only by
environment (no compose plugin here to run it: its structure is checked instead)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from app.config import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
SECRETS = ("RRG_SECRET_KEY", "RRG_AUDIT_KEY", "POSTGRES_PASSWORD", "RRG_WEBHOOK_KEYS")


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return dict(loaded["services"])


def test_postgres_one_shot_migration_two_api_replicas_and_one_worker() -> None:
    found = services()
    assert set(found) == {"postgres", "migrate", "api-1", "api-2", "worker"}
    assert found["migrate"]["command"] == ["rrg", "migrate"]
    assert found["migrate"]["restart"] == "no"
    assert found["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api-1", "api-2"):
        assert found[name]["command"] == ["rrg", "serve"]
        assert found[name]["environment"]["RRG_SCHEDULER"] == "off"
    assert found["worker"]["command"] == ["rrg", "worker"]
    for name in ("api-1", "api-2", "worker"):
        condition = found[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


def test_configured_only_by_environment() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in services().items():
        command = " ".join(service.get("command") or [])
        assert "--" not in command, f"{name} is configured by a command-line option"
        for variable, value in service["environment"].items():
            if variable.startswith("RRG_"):
                assert variable.removeprefix("RRG_") in fields, f"{name}: unknown {variable}"
            if variable in SECRETS:
                # Taken from the environment, never written in the file.
                assert re.fullmatch(r"\$\{" + variable + r"(:\?[^}]*|:-)\}", str(value)), value
