"""A synchronous driver of the real app for Hypothesis state machines.

Rules of a ``RuleBasedStateMachine`` are synchronous; the driver owns an event loop, its
own engine on the migrated test database, and an httpx client over ASGI.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from pydantic import SecretStr

from app.auth import service as auth_service
from app.auth.schemas import TokenCreate, UserCreate
from app.auth.service import Principal
from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.conftest import TEST_AUDIT_KEY, Actor, clear_data

T = TypeVar("T")


class Api:
    """The real app over ASGI on its own event loop, driven from synchronous rules."""

    def __init__(self, database_url: str) -> None:
        self.runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        settings = Settings(
            env="test",
            database_url=database_url,
            scheduler="off",
            audit_key=SecretStr(TEST_AUDIT_KEY),
        )
        self.db = Database.from_settings(settings)
        app = create_app(settings, db=self.db)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://rrg.test",
        )
        self._serial = itertools.count()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def call(
        self,
        method: str,
        url: str,
        who: Actor,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return self.run(
            self.client.request(method, url, json=json, headers={**who.headers, **(headers or {})})
        )

    def make_people(self, labels: tuple[str, ...]) -> dict[str, Actor]:
        async def make() -> dict[str, Actor]:
            out = {}
            async with self.db.unit_of_work() as session:
                for label in labels:
                    ministry, role, _ = label.split(":")
                    n = next(self._serial)
                    user = await auth_service.create_user(
                        session,
                        UserCreate(
                            email=f"m{n}.{role}@{ministry.lower()}.example.org",
                            display_name=f"{label} #{n}",
                            ministry=ministry,
                            role=role,
                        ),
                        by=None,
                    )
                    _, token = await auth_service.create_token(
                        session, Principal(user=user), TokenCreate(name="machine")
                    )
                    out[label] = Actor(user=user, token=token)
            return out

        return self.run(make())

    def clear(self) -> None:
        self.run(clear_data(self.db))

    def close(self) -> None:
        try:
            self.run(self.client.aclose())
            self.run(self.db.dispose())
        finally:
            self.runner.close()


def present(text: str | None) -> bool:
    return bool(text and text.strip())


def role_of(label: str) -> str:
    return label.split(":")[1]


def ministry_of(label: str) -> str:
    return label.split(":")[0]


class DrivenMachine(RuleBasedStateMachine):
    """A state machine whose rules call the app through a shared ``Api``."""

    api: ClassVar[Api]


def run_machine(machine: type[DrivenMachine], database_url: str) -> None:
    """Run a machine against the migrated test database, within a bounded budget."""
    api = Api(database_url)
    machine.api = api
    try:
        api.clear()
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=15,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        api.close()
