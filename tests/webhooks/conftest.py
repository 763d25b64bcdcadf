from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from app.config import Settings
from app.db import Database
from app.webhooks.dispatcher import Dispatcher
from tests.escalation.helpers import Clock
from tests.webhooks.receiver import Receiver

# Loopback (the receiver) and a test host name are opened for plain HTTP.
ALLOWLIST = ["127.0.0.1", "hooks.example.test"]


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        scheduler="off",
        webhook_allowlist=ALLOWLIST,
        webhook_timeout_seconds=2,
    )


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Iterator[Receiver]:
    receiver_server.reset()
    yield receiver_server
    receiver_server.reset()


@pytest.fixture
def clock(db: Database) -> Clock:
    """The service clock frozen at the wall clock's now (the receiver's reference library
    checks timestamps against the wall clock); moved by tests, reset by ``db``."""
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def dispatcher(db: Database, settings: Settings) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher.from_settings(settings, db)
    yield dispatcher
    await dispatcher.stop()
    await dispatcher.aclose()
