"""The timeline's append-only trigger gains one controlled exception: re-keying.

A transaction that sets ``rrg.timeline_rekey = 'on'`` (``rrg audit rekey`` sets it with
SET LOCAL) may UPDATE an event's ``prev_hash`` and ``hash`` and nothing else; every other
column must stay as it was, and DELETE stays refused. Normal operation never sets the
flag, so the table stays append-only for it; even with the flag, no recorded content can
change. (PostgreSQL only: SQLite has no such trigger.)

Revision ID: a6ac42b2a43f
Revises: f359b670384e
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "a6ac42b2a43f"
down_revision: str | None = "f359b670384e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_REKEY_PATH = """
CREATE OR REPLACE FUNCTION rrg_timeline_events_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND current_setting('rrg.timeline_rekey', true) = 'on'
        AND (NEW.id, NEW.incident_id, NEW.seq, NEW.at, NEW.actor_kind, NEW.actor_user_id,
             NEW.actor_token_id, NEW.type, NEW.data)
            IS NOT DISTINCT FROM
            (OLD.id, OLD.incident_id, OLD.seq, OLD.at, OLD.actor_kind, OLD.actor_user_id,
             OLD.actor_token_id, OLD.type, OLD.data)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'timeline events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""
APPEND_ONLY = """
CREATE OR REPLACE FUNCTION rrg_timeline_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'timeline events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WITH_REKEY_PATH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY)
