"""Webhooks: subscriptions, deliveries and attempts; outbox events keep the incident's
snapshot and their audience (fan-out happens at emit, so `dispatched_at` goes); notifications
may be about the service rather than an incident.

Revision ID: 6d7aeae98511
Revises: cea00e19ebcc
Create Date: 2026-12-02 00:49:41.561722
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision: str = "6d7aeae98511"
down_revision: str | None = "cea00e19ebcc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("incident_id", existing_type=sa.Uuid(), nullable=True)
    with op.batch_alter_table("outbox_events") as batch:
        batch.add_column(sa.Column("incident_key", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("incident_title", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("severity", sa.String(length=4), nullable=True))
        batch.add_column(sa.Column("tlp", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("reporter_ministry_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("ministry_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("subscription_id", sa.Uuid(), nullable=True))
        batch.drop_index("ix_outbox_events_undispatched")
        batch.create_index("ix_outbox_events_created_at", ["created_at"], unique=False)
        batch.create_foreign_key(
            op.f("fk_outbox_events_ministry_id_ministries"), "ministries", ["ministry_id"], ["id"]
        )
        batch.drop_column("dispatched_at")
    op.create_table(
        "webhook_subscriptions",
        sa.Column("ministry_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column(
            "event_types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("min_severity", sa.String(length=4), nullable=True),
        sa.Column("max_tlp", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("secret_ciphertext", sa.String(length=512), nullable=False),
        sa.Column("previous_secret_ciphertext", sa.String(length=512), nullable=True),
        sa.Column("previous_secret_expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failing_since", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=16), nullable=True),
        sa.Column("disabled_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "disabled_reason IS NULL OR disabled_reason IN ('gone', 'failing')",
            name=op.f("ck_webhook_subscriptions_disabled_reason"),
        ),
        sa.CheckConstraint(
            "max_tlp IN ('CLEAR', 'GREEN', 'AMBER', 'AMBER+STRICT', 'RED')",
            name=op.f("ck_webhook_subscriptions_max_tlp"),
        ),
        sa.CheckConstraint(
            "min_severity IS NULL OR min_severity IN ('SEV1', 'SEV2', 'SEV3', 'SEV4')",
            name=op.f("ck_webhook_subscriptions_min_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_webhook_subscriptions_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["ministry_id"],
            ["ministries.id"],
            name=op.f("fk_webhook_subscriptions_ministry_id_ministries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_index(
        "ix_webhook_subscriptions_ministry_id",
        "webhook_subscriptions",
        ["ministry_id"],
        unique=False,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("outbox_event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=48), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("finished_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["outbox_event_id"],
            ["outbox_events.id"],
            name=op.f("fk_webhook_deliveries_outbox_event_id_outbox_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_created_at", "webhook_deliveries", ["created_at", "id"], unique=False
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_outbox_event_id",
        "webhook_deliveries",
        ["outbox_event_id"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_deliveries_subscription_id_created_at",
        "webhook_deliveries",
        ["subscription_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'http_error', 'timeout', 'network_error', 'blocked', 'error')",
            name=op.f("ck_webhook_attempts_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        "ix_webhook_attempts_delivery_id_number",
        "webhook_attempts",
        ["delivery_id", "number"],
        unique=False,
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        batch.add_column(
            sa.Column("dispatched_at", app.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.drop_constraint(op.f("fk_outbox_events_ministry_id_ministries"), type_="foreignkey")
        batch.drop_index("ix_outbox_events_created_at")
        batch.create_index(
            "ix_outbox_events_undispatched", ["created_at", "dispatched_at"], unique=False
        )
        for name in (
            "subscription_id",
            "ministry_id",
            "reporter_ministry_id",
            "status",
            "tlp",
            "severity",
            "incident_title",
            "incident_key",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("incident_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_index("ix_webhook_attempts_delivery_id_number", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index(
        "ix_webhook_deliveries_subscription_id_created_at", table_name="webhook_deliveries"
    )
    op.drop_index("ix_webhook_deliveries_outbox_event_id", table_name="webhook_deliveries")
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_webhook_deliveries_created_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_subscriptions_ministry_id", table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
