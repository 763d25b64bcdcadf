"""TLP visibility (SPEC §6), applied in the query layer.

One rule (``_rule``), written over SQL expressions for "who is asking", serves two uses:
``visible_to(user)`` filters incidents for one user on every read path (lists, counts,
filters, search, detail, timeline, comments, actions, notifications), so an incident a user
may not see answers 404 everywhere; ``visible_pairs`` decides a batch of (user, incident)
pairs in one query (escalation recipients).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Uuid,
    and_,
    column,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.db import table_of
from app.incidents.models import Incident, IncidentParticipant
from app.kit import bulk
from app.kit.sql import constants
from app.ministries.models import Ministry

# Core columns: the rule is built of plain table columns (no ORM attribute adaptation),
# and an alias of participants, so the subquery correlates only to the incident even inside
# queries that already select from participants.
_incidents = table_of(Incident)
_users = table_of(User)
_ministries = table_of(Ministry)
_participant = table_of(IncidentParticipant).alias("visible_participant")


def _named(user_id: Any) -> ColumnElement[bool]:
    """The user is one of the incident's named people: its reporter, an owner or a
    participant. Assigning an action names nobody: visibility is widened only by naming
    someone on the incident itself, where it is visible and recorded."""
    i = _incidents.c
    return or_(
        i.reporter_id == user_id,
        i.doe_owner_id == user_id,
        i.meti_owner_id == user_id,
        exists().where(_participant.c.incident_id == i.id, _participant.c.user_id == user_id),
    )


def _rule(user_id: Any, ministry_id: Any, co_lead: ColumnElement[bool]) -> ColumnElement[bool]:
    i = _incidents.c
    named = _named(user_id)
    return or_(
        i.tlp.in_(constants(("CLEAR", "GREEN"))),
        # AMBER: the co-lead ministries (a partner only when named on it).
        and_(i.tlp == "AMBER", or_(co_lead, named)),
        # AMBER+STRICT: the reporter's ministry and the named people.
        and_(i.tlp == "AMBER+STRICT", or_(i.reporter_ministry_id == ministry_id, named)),
        # RED: named people only.
        and_(i.tlp == "RED", named),
    )


@lru_cache(maxsize=4096)
def _rule_for(user_id: uuid.UUID, ministry_id: uuid.UUID, co_lead: bool) -> ColumnElement[bool]:
    """The rule for one principal, built once: SQL expressions are immutable, so the same
    predicate serves every statement of this user (the values travel as bound parameters,
    so every user's statements share one compiled form)."""
    return _rule(literal(user_id, Uuid), literal(ministry_id, Uuid), true() if co_lead else false())


def visible_to(user: User) -> ColumnElement[bool]:
    if not user.active:
        return false()
    return _rule_for(user.id, user.ministry_id, user.ministry.is_co_lead)


async def visible_pairs(
    session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Which (user, incident) pairs are visible (active users only), in one query."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return set()
    asked: Any
    postgresql = bulk.is_postgresql(session)
    if postgresql:
        # Two array parameters, whatever the batch size (a VALUES list of thousands of
        # pairs costs more to compile than to run), numbered from 1 by WITH ORDINALITY.
        asked = (
            func.unnest(
                literal([u for u, _ in wanted], ARRAY(Uuid)),
                literal([i for _, i in wanted], ARRAY(Uuid)),
            )
            .table_valued(
                column("user_id", Uuid), column("incident_id", Uuid), with_ordinality="number"
            )
            .render_derived()
            .alias("asked")
        )
    else:
        asked = (
            values(
                column("user_id", Uuid),
                column("incident_id", Uuid),
                column("number", Integer),
                name="asked",
            )
            .data([(u, i, n) for n, (u, i) in enumerate(wanted, start=1)])
            .cte("asked")
        )
    # Only the numbers of the visible pairs come back: thousands of small integers cost
    # far less to read than thousands of pairs of ids, and on PostgreSQL as one array (one
    # row to read instead of one per pair).
    query = (
        select(func.array_agg(asked.c.number) if postgresql else asked.c.number)
        .join(_users, _users.c.id == asked.c.user_id)
        .join(_ministries, _ministries.c.id == _users.c.ministry_id)
        .join(_incidents, _incidents.c.id == asked.c.incident_id)
        .where(
            _users.c.active,
            _rule(_users.c.id, _users.c.ministry_id, _ministries.c.kind == "co_lead"),
        )
    )
    if postgresql:
        numbers = await session.scalar(query) or []
    else:
        numbers = (await session.scalars(query)).all()
    return {wanted[n - 1] for n in numbers}
