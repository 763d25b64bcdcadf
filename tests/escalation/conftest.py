from __future__ import annotations

import pytest

from app.db import Database
from tests.conftest import MakeActor
from tests.escalation.helpers import Clock, Team, make_team


@pytest.fixture
def frozen(db: Database) -> Clock:
    """The service clock frozen at T0 (the ``db`` fixture resets it afterwards)."""
    return Clock()


@pytest.fixture
async def team(frozen: Clock, make_actor: MakeActor) -> Team:
    return await make_team(make_actor)
