"""Key the timeline's hash chain: re-hash every chain with HMAC-SHA256 under the audit key.

Each intact chain is checked under the old digest and re-linked under the new one; a chain
already broken is re-hashed only up to its first broken link, so the break stays where it
was (and ``rrg audit verify`` still names it) instead of being laundered by the migration.
The key comes from the caller (``app.migrate.upgrade(..., audit_key=...)``) or the
environment (RRG_AUDIT_KEY, else derived from RRG_SECRET_KEY) and is never stored. On
PostgreSQL the append-only trigger is disabled for this transaction's rewrite only; the
table stays locked against appends until the migration commits.

Revision ID: cea00e19ebcc
Revises: 3b7c1d2e9f40
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

import app.db
from app.migrate import migration_audit_key
from app.timeline.service import GENESIS, chain_message, keyed_hash

revision: str = "cea00e19ebcc"
down_revision: str | None = "3b7c1d2e9f40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("rrg.migrations")
PAGE = 5000
Digest = Callable[[bytes], str]

EVENTS = sa.table(
    "timeline_events",
    sa.column("id", sa.Uuid()),
    sa.column("incident_id", sa.Uuid()),
    sa.column("seq", sa.Integer()),
    sa.column("at", app.db.UTCDateTime(timezone=True)),
    sa.column("actor_kind", sa.String()),
    sa.column("actor_user_id", sa.Uuid()),
    sa.column("actor_token_id", sa.Uuid()),
    sa.column("type", sa.String()),
    sa.column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
INCIDENTS = sa.table(
    "incidents",
    sa.column("id", sa.Uuid()),
    sa.column("key", sa.String()),
    sa.column("event_count", sa.Integer()),
    sa.column("last_event_hash", sa.String()),
)


def plain_sha256(message: bytes) -> str:
    """The digest before this revision (anyone with the database could recompute it)."""
    return hashlib.sha256(message).hexdigest()


def upgrade() -> None:
    key = migration_audit_key(context.config)
    rehash(plain_sha256, lambda message: keyed_hash(key, message))


def downgrade() -> None:
    key = migration_audit_key(context.config)
    rehash(lambda message: keyed_hash(key, message), plain_sha256)


class Chain:
    """One incident's chain as the rewrite walks it. (Not a dataclass: Alembic loads this
    module outside sys.modules, where dataclasses cannot resolve its annotations.)"""

    def __init__(self, incident_id: uuid.UUID) -> None:
        self.incident_id = incident_id
        self.next_seq = 1
        self.old_prev = self.new_prev = GENESIS
        self.intact = True


def rehash(old: Digest, new: Digest) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE timeline_events DISABLE TRIGGER timeline_events_append_only")
    heads = {row.id: row for row in bind.execute(sa.select(INCIDENTS))}
    broken: list[str] = []
    head_updates: list[dict[str, object]] = []

    def finish(chain: Chain) -> None:
        head = heads[chain.incident_id]
        complete = head.event_count == chain.next_seq - 1 and head.last_event_hash == chain.old_prev
        if chain.intact and complete:
            head_updates.append({"b_id": chain.incident_id, "last_event_hash": chain.new_prev})
        else:
            broken.append(head.key)

    chain: Chain | None = None
    after: tuple[uuid.UUID, int] | None = None
    while True:
        query = sa.select(EVENTS).order_by(EVENTS.c.incident_id, EVENTS.c.seq).limit(PAGE)
        if after is not None:
            query = query.where(sa.tuple_(EVENTS.c.incident_id, EVENTS.c.seq) > sa.tuple_(*after))
        rows = bind.execute(query).all()
        if not rows:
            break
        event_updates: list[dict[str, object]] = []
        for row in rows:
            if chain is None or chain.incident_id != row.incident_id:
                if chain is not None:
                    finish(chain)
                chain = Chain(row.incident_id)
            if not chain.intact:
                continue  # from the first broken link on, the chain is left as it was
            fields = {
                "incident_id": row.incident_id,
                "seq": row.seq,
                "at": row.at,
                "actor_kind": row.actor_kind,
                "actor_user_id": row.actor_user_id,
                "actor_token_id": row.actor_token_id,
                "type_": row.type,
                "data": row.data,
            }
            stored = chain_message(prev_hash=row.prev_hash, **fields)
            if (
                row.seq != chain.next_seq
                or row.prev_hash != chain.old_prev
                or old(stored) != row.hash
            ):
                chain.intact = False
                continue
            relinked = chain_message(prev_hash=chain.new_prev, **fields)
            rehashed = new(relinked)
            event_updates.append({"b_id": row.id, "prev_hash": chain.new_prev, "hash": rehashed})
            chain.next_seq, chain.old_prev, chain.new_prev = row.seq + 1, row.hash, rehashed
        if event_updates:
            bind.execute(
                EVENTS.update()
                .where(EVENTS.c.id == sa.bindparam("b_id"))
                .values(prev_hash=sa.bindparam("prev_hash"), hash=sa.bindparam("hash")),
                event_updates,
            )
        after = (rows[-1].incident_id, rows[-1].seq)
    if chain is not None:
        finish(chain)
    if head_updates:
        bind.execute(
            INCIDENTS.update()
            .where(INCIDENTS.c.id == sa.bindparam("b_id"))
            .values(last_event_hash=sa.bindparam("last_event_hash")),
            head_updates,
        )
    if broken:
        logger.warning(
            "timeline chains already broken before re-hashing (left broken from their first "
            "broken link; run `rrg audit verify`): %s",
            ", ".join(sorted(broken)),
        )
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE timeline_events ENABLE TRIGGER timeline_events_append_only")
