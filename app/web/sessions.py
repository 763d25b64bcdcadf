"""Web sign-in: server-side sessions and the sign-in rate limit (rows in the database, so
every replica agrees and a sign-out or a deactivation takes effect everywhere)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth import service as auth_service
from app.auth.models import User
from app.auth.security import hash_token
from app.config import Settings
from app.web.models import SigninAttempt, WebSession

# last_seen_at (and the sliding expiry) move at most this often, keeping most reads read-only.
TOUCH_RESOLUTION = timedelta(minutes=5)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


async def start(session: AsyncSession, user: User, settings: Settings) -> str:
    """A new session for the user; returns the cookie's token (only its hash is stored)."""
    token = new_session_token()
    now = clock.now()
    session.add(
        WebSession(
            token_hash=hash_token(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=settings.web_session_hours),
        )
    )
    await session.flush()
    return token


async def resolve(session: AsyncSession, token: str) -> tuple[WebSession, User] | None:
    """The live session and its active user, or None (unknown, expired, user deactivated)."""
    row = (
        await session.execute(
            select(WebSession, User)
            .join(User, User.id == WebSession.user_id)
            .where(WebSession.token_hash == hash_token(token))
        )
    ).first()
    if row is None:
        return None
    web_session, user = row
    if web_session.expires_at <= clock.now() or not user.active:
        return None
    return web_session, user


def needs_touch(web_session: WebSession) -> bool:
    return clock.now() - web_session.last_seen_at >= TOUCH_RESOLUTION


async def touch(session: AsyncSession, web_session: WebSession, settings: Settings) -> None:
    now = clock.now()
    row = await session.get(WebSession, web_session.id)
    if row is not None:
        row.last_seen_at = now
        row.expires_at = now + timedelta(hours=settings.web_session_hours)
        await session.flush()


async def end(session: AsyncSession, token: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(token)))


# --- sign-in attempts ---------------------------------------------------------------------


async def too_many_failures(
    session: AsyncSession, settings: Settings, email: str, address: str
) -> bool:
    """Whether this account or this address has failed too often within the window."""
    since = clock.now() - timedelta(seconds=settings.signin_window_seconds)
    email = email.strip().lower()
    by_account, by_address = (
        await session.execute(
            select(
                func.count().filter(SigninAttempt.email == email),
                func.count().filter(SigninAttempt.address == address),
            ).where(
                SigninAttempt.at >= since,
                or_(SigninAttempt.email == email, SigninAttempt.address == address),
            )
        )
    ).one()
    return bool(
        by_account >= settings.signin_max_failures_per_account
        or by_address >= settings.signin_max_failures_per_address
    )


async def record_failure(session: AsyncSession, email: str, address: str) -> None:
    session.add(SigninAttempt(email=email.strip().lower()[:320], address=address, at=clock.now()))
    await session.flush()


async def forget_failures(session: AsyncSession, email: str, before: datetime) -> None:
    """A successful sign-in clears the account's failures (the address keeps its count)."""
    await session.execute(
        delete(SigninAttempt).where(
            SigninAttempt.email == email.strip().lower(), SigninAttempt.at <= before
        )
    )


async def sign_in(
    session: AsyncSession, settings: Settings, email: str, password: str, address: str
) -> tuple[User | None, bool]:
    """(user, limited): the user when the password is right and no limit is reached."""
    if await too_many_failures(session, settings, email, address):
        return None, True
    user = await auth_service.authenticate_password(session, email, password)
    if user is None:
        await record_failure(session, email, address)
        return None, False
    await forget_failures(session, email, clock.now())
    return user, False
