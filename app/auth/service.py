"""Users, passwords and API tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import caches, clock
from app.auth import permissions
from app.auth.cache import CachedToken, principals
from app.auth.models import ApiToken, User
from app.auth.schemas import TokenCreate, UserCreate, UserUpdate
from app.auth.security import hash_password, hash_token, new_token, verify_password
from app.db import Database
from app.errors import Conflict, InvalidInput, NotFound
from app.kit.pagination import Key, Order, paginate
from app.ministries.models import Ministry
from app.ministries.service import get_by_code
from app.models_base import apply_changes, requested_changes

# last_used_at is refreshed at most this often per token, to keep reads read-only.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, and the token they used (None for a web session or the
    operator at the command line) with its expiry."""

    user: User
    token_id: uuid.UUID | None = None
    token_expires_at: datetime | None = None


async def visible_user(session: AsyncSession, by: User, user_id: uuid.UUID) -> User:
    """The user if the caller may see them (active, or managed by the caller); 404 if not."""
    user = await session.get(User, user_id)
    if user is None or not permissions.sees_user(by, user):
        raise NotFound("No such user")
    return user


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.strip().lower()))


USERS_ORDER = Order("users", Key(User.email, "str"))
DIRECTORY_ORDER = Order(
    "directory", Key(func.lower(User.display_name), "str"), Key(User.id, "uuid")
)
TOKENS_ORDER = Order("tokens", Key(ApiToken.created_at, "datetime"), Key(ApiToken.id, "uuid"))


async def managed_ministry_ids(session: AsyncSession, by: User) -> list[uuid.UUID]:
    ministries = (await session.scalars(select(Ministry))).all()
    return [m.id for m in ministries if permissions.manages_ministry(by, m)]


async def list_users(
    session: AsyncSession, by: User, *, limit: int, cursor: str | None
) -> tuple[list[User], str | None]:
    """The users an admin manages (their ministry's; a co-lead admin's also every
    partner's), by email."""
    permissions.require(permissions.is_admin(by), "Managing users needs the admin role")
    query = select(User).where(User.ministry_id.in_(await managed_ministry_ids(session, by)))
    return await paginate(session, query, USERS_ORDER, limit=limit, cursor=cursor)


def directory_query(
    by: User, *, q: str | None, ministry: str | None, roles: Sequence[str]
) -> Select[User]:
    """Active users; ``q`` matches the display name (and, for co-lead callers, the email)
    in any case."""
    query = select(User).where(User.active)
    if ministry:
        query = query.where(
            User.ministry_id
            == select(Ministry.id).where(Ministry.code == ministry.upper()).scalar_subquery()
        )
    if roles:
        query = query.where(User.role.in_(roles))
    if q and q.strip():
        needle = q.strip().lower()
        matches = [func.lower(User.display_name).contains(needle, autoescape=True)]
        if permissions.sees_emails(by):
            matches.append(User.email.contains(needle, autoescape=True))
        query = query.where(or_(*matches))
    return query


async def directory(
    session: AsyncSession,
    by: User,
    *,
    q: str | None,
    ministry: str | None,
    roles: Sequence[str],
    limit: int,
    cursor: str | None,
) -> tuple[list[User], str | None]:
    """Active users by display name, for anyone to find an owner, participant or assignee."""
    query = directory_query(by, q=q, ministry=ministry, roles=roles)
    return await paginate(session, query, DIRECTORY_ORDER, limit=limit, cursor=cursor)


def _may_manage_in(by: User, ministry: Ministry) -> None:
    permissions.require(
        permissions.manages_ministry(by, ministry), f"You may not manage users of {ministry.code}"
    )


def _may_grant(by: User, role: str) -> None:
    permissions.require(
        permissions.may_grant_role(by, role), f"role: you may not grant {role}, above your own"
    )


def _may_set_co_chair(by: User) -> None:
    """The co_chair field, whatever its value, is for DOE and METI admins only."""
    permissions.require(
        permissions.may_set_co_chair(by),
        "co_chair: only admins of DOE and METI may set the co-chair flag",
    )


async def create_user(session: AsyncSession, data: UserCreate, *, by: User | None) -> User:
    """Create a user. ``by`` is the admin asking; None is the operator at the command line,
    who answers to no role."""
    ministry = await get_by_code(session, data.ministry)
    if by is not None:
        _may_manage_in(by, ministry)
        _may_grant(by, data.role)
        if "co_chair" in data.model_fields_set:
            _may_set_co_chair(by)
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


async def update_user(
    session: AsyncSession, user_id: uuid.UUID, data: UserUpdate, *, by: User
) -> User:
    permissions.require(permissions.is_admin(by), "Managing users needs the admin role")
    user = await visible_user(session, by, user_id)
    _may_manage_in(by, user.ministry)
    changes = requested_changes(data)
    if "role" in changes:
        _may_grant(by, changes["role"])
    if "co_chair" in changes:
        _may_set_co_chair(by)
    apply_changes(user, {k: v for k, v in changes.items() if k != "password"})
    if changes.get("password"):
        user.password_hash = await asyncio.to_thread(hash_password, changes["password"])
    await session.flush()
    return user


async def set_language(session: AsyncSession, user: User, language: str) -> None:
    """A user's own choice of language (any user may change their own)."""
    if language not in ("en", "ja"):
        raise InvalidInput("language", "must be en or ja")
    if user.language != language:
        user.language = language
        await session.flush()


async def authenticate_password(session: AsyncSession, email: str, password: str) -> User | None:
    """The active user with this email and password, or None, in constant-ish time."""
    user = await find_user_by_email(session, email)
    ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    return user if ok and user is not None and user.active else None


async def create_token(
    session: AsyncSession, principal: Principal, data: TokenCreate
) -> tuple[ApiToken, str]:
    """A new token for the caller. A token cannot create one that outlives it: without an
    expiry the new token expires with the one making the request."""
    now = clock.now()
    ceiling = principal.token_expires_at
    expires_at = data.expires_at if data.expires_at is not None else ceiling
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("expires_at", "must be in the future")
    if ceiling is not None and expires_at is not None and expires_at > ceiling:
        raise InvalidInput(
            "expires_at",
            f"must be no later than {ceiling.isoformat()}, when the token making this "
            "request expires",
        )
    plaintext = new_token()
    token = ApiToken(
        user_id=principal.user.id,
        name=data.name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:8],
        created_at=now,
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    return token, plaintext


async def list_tokens(
    session: AsyncSession,
    principal: Principal,
    user_id: uuid.UUID | None,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[ApiToken], str | None]:
    """The caller's tokens, or (admins) those of a user they manage, oldest first."""
    by = principal.user
    if user_id is not None and user_id != by.id:
        owner = await visible_user(session, by, user_id)
        permissions.require(
            permissions.manages_tokens_of(by, owner),
            "Only the admins who manage a user may list their tokens",
        )
    query = select(ApiToken).where(ApiToken.user_id == (user_id or by.id))
    return await paginate(session, query, TOKENS_ORDER, limit=limit, cursor=cursor)


async def revoke_token(session: AsyncSession, principal: Principal, token_id: uuid.UUID) -> None:
    """Revoke a token of the caller's own or of a user they manage; others' are 404."""
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.id == token_id)
        )
    ).first()
    if row is None or not permissions.manages_tokens_of(principal.user, row[1]):
        raise NotFound("No such token")
    token = row[0]
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        await session.flush()


# Built once: every authenticated request that misses the cache runs it (the hash travels
# as a parameter).
_token_query = (
    select(ApiToken, User)
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


async def _live_token(db: Database, token_hash: str) -> CachedToken:
    """The token with this hash and its user, read in one statement of its own, outside any
    transaction. Unknown and revoked tokens and deactivated users raise LookupError."""
    async with db.single_read() as session:
        row = (await session.execute(_token_query, {"token_hash": token_hash})).first()
        if row is None or row[0].revoked_at is not None or not row[1].active:
            raise LookupError
        return CachedToken.of(*row)


async def principal_for_token(db: Database, plaintext: str, *, max_age: float) -> Principal:
    """The caller a bearer token stands for, from this process's cache when it was read
    there less than ``max_age`` seconds ago (0: always read), else from the database.
    Records its use (``last_used_at``, to LAST_USED_RESOLUTION).

    Unknown, revoked and expired tokens and deactivated users all raise LookupError.
    """
    token_hash = hash_token(plaintext)
    cache = principals if max_age > 0 and caches.serving(db.dialect) else None
    token = cache.get(token_hash, max_age) if cache is not None else None
    if token is None:
        ticket = principals.ticket()
        token = await _live_token(db, token_hash)
        if cache is not None:
            cache.put(token_hash, token, ticket)
    now = clock.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise LookupError
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        principals.touched(token_hash, now)
        async with db.unit_of_work() as writer:
            await touch_token(writer, token.token_id, now)
    return Principal(user=token.user(), token_id=token.token_id, token_expires_at=token.expires_at)


async def touch_token(session: AsyncSession, token_id: uuid.UUID, at: datetime) -> None:
    # On the connection, not through the session: a last use changes nothing a cached
    # principal holds, so it must not drop the cache (see app.auth.models).
    connection = await session.connection()
    await connection.execute(
        update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=at)
    )
