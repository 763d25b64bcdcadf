"""How many response actions an incident has, for the lifecycle guards.

Response actions arrive with their own domain; until then an incident has none.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession


async def action_counts(session: AsyncSession, incident_id: uuid.UUID) -> tuple[int, int]:
    """(live, open): actions not rejected/cancelled, and actions not yet finished."""
    return 0, 0
