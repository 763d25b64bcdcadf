"""Users, passwords and API tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import ApiToken, User
from app.auth.schemas import TokenCreate, UserCreate, UserUpdate
from app.auth.security import hash_password, hash_token, new_token, verify_password
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.ministries.service import get_by_code

# last_used_at is refreshed at most this often per token, to keep reads read-only.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, and the token they used (None for a web session)."""

    user: User
    token_id: uuid.UUID | None = None


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    return user


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.strip().lower()))


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.scalars(select(User).order_by(User.email))).all()


async def create_user(session: AsyncSession, data: UserCreate) -> User:
    ministry = await get_by_code(session, data.ministry)
    email = data.email.strip().lower()
    if await session.scalar(select(func.count()).where(User.email == email)):
        raise Conflict(f"A user with email {email} already exists")
    user = User(
        email=email,
        display_name=data.display_name,
        ministry_id=ministry.id,
        ministry=ministry,
        role=data.role,
        language=data.language,
        timezone=data.timezone or ministry.timezone,
        co_chair=data.co_chair,
        active=True,
        # Argon2 is deliberately slow: keep it off the event loop.
        password_hash=await asyncio.to_thread(hash_password, data.password)
        if data.password
        else None,
    )
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same email
        raise Conflict(f"A user with email {email} already exists") from exc
    return user


async def update_user(session: AsyncSession, user: User, data: UserUpdate) -> User:
    changes = data.model_dump(exclude_unset=True)
    for field in ("display_name", "role", "language", "timezone", "co_chair", "active"):
        if field in changes:
            if changes[field] is None:
                raise InvalidInput(field, "may not be null")
            setattr(user, field, changes[field])
    if changes.get("password"):
        user.password_hash = await asyncio.to_thread(hash_password, changes["password"])
    await session.flush()
    return user


async def authenticate_password(session: AsyncSession, email: str, password: str) -> User | None:
    """The active user with this email and password, or None, in constant-ish time."""
    user = await find_user_by_email(session, email)
    ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    return user if ok and user is not None and user.active else None


async def create_token(
    session: AsyncSession, user: User, data: TokenCreate
) -> tuple[ApiToken, str]:
    now = clock.now()
    if data.expires_at is not None and data.expires_at <= now:
        raise InvalidInput("expires_at", "must be in the future")
    plaintext = new_token()
    token = ApiToken(
        user_id=user.id,
        name=data.name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:8],
        created_at=now,
        expires_at=data.expires_at,
    )
    session.add(token)
    await session.flush()
    return token, plaintext


async def list_tokens(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID | None
) -> Sequence[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if principal.user.role != "admin":
        if user_id is not None and user_id != principal.user.id:
            raise Forbidden("Only admins may list other users' tokens")
        user_id = principal.user.id
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return (await session.scalars(query)).all()


async def revoke_token(session: AsyncSession, principal: Principal, token_id: uuid.UUID) -> None:
    token = await session.get(ApiToken, token_id)
    if token is None or (principal.user.role != "admin" and token.user_id != principal.user.id):
        raise NotFound("No such token")
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        await session.flush()


async def principal_for_token(session: AsyncSession, plaintext: str) -> tuple[Principal, bool]:
    """Resolve a bearer token. Returns the principal and whether last_used_at is stale.

    Raises nothing: callers turn ``None`` user into 401. Unknown, revoked, expired tokens
    and deactivated users all fail the same way.
    """
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(plaintext))
        )
    ).first()
    if row is None:
        raise LookupError
    token, user = row
    now = clock.now()
    if token.revoked_at is not None or not user.active:
        raise LookupError
    if token.expires_at is not None and token.expires_at <= now:
        raise LookupError
    stale = token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION
    return Principal(user=user, token_id=token.id), stale


async def touch_token(session: AsyncSession, token_id: uuid.UUID, at: datetime) -> None:
    await session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=at))
