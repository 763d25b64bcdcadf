from __future__ import annotations

import pytest
from pydantic import SecretStr

from app.config import Settings
from tests.conftest import TEST_AUDIT_KEY
from tests.webhooks.conftest import ALLOWLIST, clock, dispatcher, receiver, receiver_server

__all__ = ["clock", "dispatcher", "receiver", "receiver_server"]

METRICS_TOKEN = "scrape-token-for-the-tests-0123456789"


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        scheduler="off",
        audit_key=SecretStr(TEST_AUDIT_KEY),
        webhook_allowlist=ALLOWLIST,
        webhook_timeout_seconds=2,
        metrics_token=SecretStr(METRICS_TOKEN),
    )
