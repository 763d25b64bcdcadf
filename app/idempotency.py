"""Idempotency-Key for creating endpoints (SPEC §8).

The same key and body replays the first response; the same key with another body is
422; a duplicate while the first is still in flight is 409; keys are kept 24 hours.

A key is reserved in a short transaction of its own (so concurrent duplicates see it),
and its response is stored in the request's own transaction (so the stored answer and
the created rows commit together). A reservation whose request died is taken over after
``IN_FLIGHT_TIMEOUT``.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Protocol, TypeVar

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app import clock
from app.config import Settings
from app.db import Base, Database, JSONType
from app.deps import CurrentUser, etag, get_database
from app.errors import Conflict, InvalidInput
from app.models_base import IdMixin

KEY_LIFETIME = timedelta(hours=24)
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)
MAX_KEY_LENGTH = 200

M = TypeVar("M", bound=BaseModel)

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Replays the first response for the same key and body (kept 24 hours)",
    ),
]


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


SEAL_PREFIX = "sealed:"


def _fernet(secret: str) -> Fernet:
    key = hashlib.sha256(b"rrg idempotency seal\x00" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _etag_headers(version: Any) -> dict[str, str]:
    """Single resources carry the strong ETag of their ``version`` (SPEC §8)."""
    return {"ETag": etag(version)} if isinstance(version, int) else {}


class HasId(Protocol):
    id: uuid.UUID


@dataclass
class Idempotency:
    """The optional ``Idempotency-Key`` of a creating request (SPEC §8).

    An endpoint takes ``idempotency: Idempotent`` and returns
    ``await idempotency.respond(...)``; without a key the endpoint just runs.
    """

    db: Database
    user_id: uuid.UUID
    key: str | None
    body: bytes
    secret: str

    async def respond(
        self,
        session: AsyncSession,
        response: Response,
        *,
        scope: str,
        produce: Callable[[], Awaitable[M]],
        recheck: Callable[[Any], Awaitable[object]],
        within: Callable[[AsyncSession], Awaitable[HasId]] | None = None,
        sealed: Sequence[str] = (),
        status: int = 201,
    ) -> M | JSONResponse:
        """Run ``produce`` once per key, or replay its first response.

        ``scope`` names the collection the request creates in; ``within`` resolves its
        parent (an incident, by id or key) so both spellings share one scope. A replay
        first runs ``recheck`` on the stored body, which raises (404) when the caller may
        no longer see the result. Fields in ``sealed`` (secrets shown once) are stored
        encrypted with a key derived from ``RRG_SECRET_KEY``.
        """
        if self.key is None:
            result = await produce()
            response.headers.update(_etag_headers(getattr(result, "version", None)))
            return result
        if within is not None:
            async with self.db.unit_of_work(readonly=True) as reader:
                scope = f"{scope}:{(await within(reader)).id}"
        reservation = await reserve(
            self.db,
            user_id=self.user_id,
            scope=scope,
            key=self.key,
            request_hash=body_hash(self.body),
        )
        if reservation.replay is not None:
            body = self._unseal(reservation.replay.body, sealed)
            await recheck(body)
            version = body.get("version") if isinstance(body, dict) else None
            return JSONResponse(
                body,
                status_code=reservation.replay.status,
                headers={"Idempotent-Replayed": "true", **_etag_headers(version)},
            )
        try:
            result = await produce()
            body = result.model_dump(mode="json")
            await complete(session, reservation, status, self._seal(body, sealed))
        except BaseException:
            await session.rollback()  # let go of the database before freeing the key
            await release(self.db, reservation)
            raise
        response.headers.update(_etag_headers(getattr(result, "version", None)))
        return result

    def _seal(self, body: Any, fields: Sequence[str]) -> Any:
        if not fields or not isinstance(body, dict):
            return body
        fernet = _fernet(self.secret)
        return {
            name: SEAL_PREFIX + fernet.encrypt(value.encode()).decode()
            if name in fields and isinstance(value, str)
            else value
            for name, value in body.items()
        }

    def _unseal(self, body: Any, fields: Sequence[str]) -> Any:
        if not fields or not isinstance(body, dict):
            return body
        fernet = _fernet(self.secret)
        try:
            return {
                name: fernet.decrypt(value.removeprefix(SEAL_PREFIX).encode()).decode()
                if name in fields and isinstance(value, str) and value.startswith(SEAL_PREFIX)
                else value
                for name, value in body.items()
            }
        except InvalidToken:  # sealed under an RRG_SECRET_KEY since replaced
            raise Conflict(
                "The first response to this Idempotency-Key can no longer be replayed"
            ) from None


async def idempotency(
    request: Request, principal: CurrentUser, key: IdempotencyKeyHeader = None
) -> Idempotency:
    settings: Settings = request.app.state.settings
    return Idempotency(
        db=get_database(request),
        user_id=principal.user.id,
        key=key,
        body=await request.body() if key is not None else b"",
        secret=settings.secret_key.get_secret_value(),
    )


Idempotent = Annotated[Idempotency, Depends(idempotency)]
