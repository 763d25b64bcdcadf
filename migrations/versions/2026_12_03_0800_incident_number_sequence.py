"""Incident numbers come from a sequence on PostgreSQL, so creates no longer take turns.

The ``incident_key`` counter row was locked from a create's numbering to its commit, so
concurrent creates queued on it, one commit (and its flush to disk) at a time. A sequence
hands out numbers without a lock. It starts after the last number the counter gave; the
counter row is removed on PostgreSQL (SQLite keeps it: its single writer already takes
creates one at a time, so the counter costs no concurrency there).

Revision ID: 5c1e0b7d9a24
Revises: a6ac42b2a43f
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "5c1e0b7d9a24"
down_revision: str | None = "a6ac42b2a43f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE incident_numbers AS integer")
    # setval(n, false) makes nextval return n; a counter at 0 has given no number yet.
    op.execute(
        "SELECT setval('incident_numbers', value + 1, false) "
        "FROM counters WHERE name = 'incident_key'"
    )
    op.execute("DELETE FROM counters WHERE name = 'incident_key'")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "INSERT INTO counters (name, value) SELECT 'incident_key', "
        "CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM incident_numbers"
    )
    op.execute("DROP SEQUENCE incident_numbers")
