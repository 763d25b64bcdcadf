"""Drop the (assignee, incident) index of actions: assignees are no longer named on an
incident, so the visibility rule no longer looks actions up by assignee and incident.

Revision ID: 3f6b1c2a9d47
Revises: e4d6f35da507
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "3f6b1c2a9d47"
down_revision: str | None = "e4d6f35da507"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_actions_assignee_id_incident_id", table_name="actions")


def downgrade() -> None:
    op.create_index("ix_actions_assignee_id_incident_id", "actions", ["assignee_id", "incident_id"])
