"""Idempotency-Key for creating endpoints (SPEC §8).

The same key and body replays the first response; the same key with another body is
422; a duplicate while the first is still in flight is 409; keys are kept 24 hours.

A key is reserved in a short transaction of its own (so concurrent duplicates see it),
and its response is stored in the request's own transaction (so the stored answer and
the created rows commit together). A reservation whose request died is taken over after
``IN_FLIGHT_TIMEOUT``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app import clock
from app.db import Base, Database, JSONType
from app.errors import Conflict, InvalidInput
from app.models_base import IdMixin

KEY_LIFETIME = timedelta(hours=24)
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)
MAX_KEY_LENGTH = 200


class IdempotencyKey(IdMixin, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "scope", "key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_flight | done
    response_status: Mapped[int | None] = mapped_column(default=None)
    response_body: Mapped[Any | None] = mapped_column(JSONType, default=None)
    created_at: Mapped[datetime]
    locked_until: Mapped[datetime]


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


@dataclass
class Reservation:
    """The outcome of claiming a key: either ours to fulfil, or a response to replay."""

    id: uuid.UUID | None
    replay: StoredResponse | None = None


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def reserve(
    db: Database, *, user_id: uuid.UUID, scope: str, key: str, request_hash: str
) -> Reservation:
    """Claim ``key`` for this request, or return the response to replay."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters", location="header"
        )
    now = clock.now()
    async with db.unit_of_work() as session:
        existing = await session.scalar(
            select(IdempotencyKey)
            .where(
                IdempotencyKey.user_id == user_id,
                IdempotencyKey.scope == scope,
                IdempotencyKey.key == key,
            )
            .with_for_update()
        )
        if existing is not None and existing.created_at + KEY_LIFETIME <= now:
            await session.delete(existing)  # expired: the key is free again
            await session.flush()
            existing = None
        if existing is None:
            row = IdempotencyKey(
                user_id=user_id,
                scope=scope,
                key=key,
                request_hash=request_hash,
                state="in_flight",
                created_at=now,
                locked_until=now + IN_FLIGHT_TIMEOUT,
            )
            session.add(row)
            try:
                async with session.begin_nested():
                    await session.flush()
            except IntegrityError:
                raise Conflict("A request with this Idempotency-Key is still in progress") from None
            return Reservation(id=row.id)
        if existing.request_hash != request_hash:
            raise InvalidInput(
                "Idempotency-Key",
                "this key was used with a different request body",
                location="header",
            )
        if existing.state == "done":
            assert existing.response_status is not None
            return Reservation(
                id=None, replay=StoredResponse(existing.response_status, existing.response_body)
            )
        if existing.locked_until > now:
            raise Conflict("A request with this Idempotency-Key is still in progress")
        # The first request died without answering: take the key over.
        existing.locked_until = now + IN_FLIGHT_TIMEOUT
        return Reservation(id=existing.id)


async def complete(session: AsyncSession, reservation: Reservation, status: int, body: Any) -> None:
    """Store the response in the request's own transaction."""
    assert reservation.id is not None
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == reservation.id)
        .values(state="done", response_status=status, response_body=body)
    )


async def release(db: Database, reservation: Reservation) -> None:
    """Free a key whose request failed, so the client may retry at once."""
    if reservation.id is None:
        return
    async with db.unit_of_work() as session:
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == reservation.id, IdempotencyKey.state == "in_flight"
            )
        )


async def purge_expired(session: AsyncSession) -> int:
    cutoff = clock.now() - KEY_LIFETIME
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


async def respond_once(
    db: Database,
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    scope: str,
    key: str | None,
    body: bytes,
    produce: Callable[[], Awaitable[BaseModel]],
    status: int = 201,
) -> BaseModel | JSONResponse:
    """Run a creating endpoint under an optional Idempotency-Key."""
    if key is None:
        return await produce()
    reservation = await reserve(
        db, user_id=user_id, scope=scope, key=key, request_hash=body_hash(body)
    )
    if reservation.replay is not None:
        return JSONResponse(
            reservation.replay.body,
            status_code=reservation.replay.status,
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        result = await produce()
        await complete(session, reservation, status, result.model_dump(mode="json"))
    except BaseException:
        await session.rollback()  # let go of the database before freeing the key
        await release(db, reservation)
        raise
    return result
