"""Request dependencies every router uses: the unit of work, the caller, role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth import service as auth_service
from app.auth.roles import Role, at_least
from app.auth.service import Principal
from app.db import Database
from app.errors import Forbidden, Unauthorized
from app.kit.pagination import Limit as Limit  # the page-size parameter every list shares

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commits once after the endpoint returns, before the
    response is sent (so a failed commit is the client's error response), or rolls back."""
    async with get_database(request).unit_of_work(
        readonly=request.method in READ_METHODS
    ) as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API token: `rrg_...`")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, resolved in a short read of its own: the request's unit of work starts
    only when the endpoint first touches the database (so work that must commit before
    it, such as an idempotency reservation, can)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer token is required")
    db = get_database(request)
    try:
        async with db.unit_of_work(readonly=True) as session:
            principal, stale = await auth_service.principal_for_token(
                session, credentials.credentials
            )
    except LookupError:
        raise Unauthorized("The token is invalid, expired or revoked") from None
    if stale and principal.token_id is not None:
        async with db.unit_of_work() as writer:
            await auth_service.touch_token(writer, principal.token_id, clock.now())
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require_role(minimum: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting callers whose role is at least ``minimum``."""

    async def check(principal: CurrentUser) -> Principal:
        if not at_least(principal.user.role, minimum):
            raise Forbidden(f"This requires the {minimum} role or higher")
        return principal

    return check


AdminUser = Annotated[Principal, Depends(require_role("admin"))]


def optional_version(value: str | None) -> int | None:
    """The version an optional ``If-Match`` names (None when absent); unparseable → 412."""
    from app.errors import PreconditionFailed

    if value is None or not value.strip():
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise PreconditionFailed("If-Match does not name a version of this resource")
    return int(tag)


def required_version(value: str | None) -> int:
    """The version a required ``If-Match`` names: missing → 428, unparseable → 412."""
    from app.errors import PreconditionRequired

    version = optional_version(value)
    if version is None:
        raise PreconditionRequired("This change needs an If-Match header with the ETag")
    return version


def etag(version: int) -> str:
    return f'"{version}"'


IfMatch = Annotated[
    str | None, Header(alias="If-Match", description="The ETag of the version you changed")
]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Replays the first response for the same key"),
]

ETAG_RESPONSES: dict[int | str, dict[str, Any]] = {
    412: {"description": "If-Match names a stale version"},
    428: {"description": "If-Match is missing"},
}
