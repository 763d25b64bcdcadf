"""Index users by lower-cased display name and id, the directory's order.

Revision ID: 3b7c1d2e9f40
Revises: 3f6b1c2a9d47
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b7c1d2e9f40"
down_revision: str | None = "3f6b1c2a9d47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_users_directory",
        "users",
        [sa.text("lower(display_name)"), "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_users_directory", table_name="users")
