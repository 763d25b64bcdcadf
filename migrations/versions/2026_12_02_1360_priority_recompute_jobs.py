"""Priority recomputes off the request: the queue of big recomputes the worker works
through in batches, and when each incident's priority was last computed (the time-based
rescoring reads it).

Revision ID: f359b670384e
Revises: 5e1a7c3d9b20
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision: str = "f359b670384e"
down_revision: str | None = "5e1a7c3d9b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "priority_recompute_jobs",
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column(
            "minerals",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("requested_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("after_id", sa.Uuid(), nullable=True),
        sa.Column("recomputed", sa.Integer(), nullable=False),
        sa.Column("finished_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_priority_recompute_jobs")),
    )
    op.create_index(
        op.f("ix_priority_recompute_jobs_finished_at"),
        "priority_recompute_jobs",
        ["finished_at"],
        unique=False,
    )
    op.add_column(
        "incidents",
        sa.Column("priority_computed_at", app.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("incidents", "priority_computed_at")
    op.drop_index(
        op.f("ix_priority_recompute_jobs_finished_at"), table_name="priority_recompute_jobs"
    )
    op.drop_table("priority_recompute_jobs")
