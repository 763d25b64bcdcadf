"""Request dependencies every router uses: the unit of work, the caller, role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import HTTPBearer
from fastapi.security.base import SecurityBase
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.roles import Role, at_least
from app.auth.service import Principal
from app.config import Settings
from app.db import Database
from app.errors import (
    IF_MATCH_MISSING,
    Forbidden,
    InvalidInput,
    PreconditionFailed,
    PreconditionRequired,
    Unauthorized,
)
from app.kit.pagination import Limit as Limit  # the page-size parameter every list shares
from app.kit.types import unsafe_value

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

BEARER_DESCRIPTION = "An API token: `rrg_...`"
bearer_credentials = HTTPBearer(auto_error=False, description=BEARER_DESCRIPTION)


async def principal_for(request: Request, token: str | None) -> Principal:
    """The caller an API token stands for, from the process's token cache or one statement
    of its own, outside any transaction: the request's unit of work starts only when the
    endpoint first touches the database (so work that must commit before it, such as an
    idempotency reservation, can)."""
    if not token:
        raise Unauthorized("A bearer token is required")
    settings: Settings = request.app.state.settings
    try:
        return await auth_service.principal_for_token(
            get_database(request), token, max_age=settings.principal_cache_seconds
        )
    except LookupError:
        raise Unauthorized("The token is invalid, expired or revoked") from None


class BearerPrincipal(SecurityBase):
    """The caller, from ``Authorization: Bearer <API token>``. One dependency that is also
    the OpenAPI security scheme (the same one ``bearer_credentials`` declares): every API
    request resolves it, and each dependency costs the framework a resolution of its own."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description=BEARER_DESCRIPTION)
        self.scheme_name = "HTTPBearer"

    async def __call__(self, request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return await principal_for(request, token.strip() if scheme.lower() == "bearer" else None)


current_principal = BearerPrincipal()
CurrentUser = Annotated[Principal, Depends(current_principal)]


def require_role(minimum: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting callers whose role is at least ``minimum``."""

    async def check(principal: CurrentUser) -> Principal:
        if not at_least(principal.user.role, minimum):
            raise Forbidden(f"This requires the {minimum} role or higher")
        return principal

    return check


AdminUser = Annotated[Principal, Depends(require_role("admin"))]


async def refuse_unstorable_parameters(request: Request) -> None:
    """Path and query values reach SQL as text: one that no database could store (a NUL
    character) is refused with 422 before any endpoint runs."""
    checked: list[tuple[str, list[tuple[str, Any]]]] = []
    if request.path_params:
        checked.append(("path", list(request.path_params.items())))
    if request.scope.get("query_string"):  # most requests have none: nothing to parse
        checked.append(("query", request.query_params.multi_items()))
    for location, items in checked:
        for name, value in items:
            reason = unsafe_value(value)
            if reason is not None:
                raise InvalidInput(name, reason, location=location)


# No resource has this version (versions start at 1): what a non-matching If-Match
# resolves to, so the service refuses it with 412 after its own permission checks.
NO_VERSION = 0


@dataclass(frozen=True)
class Precondition:
    """What an ``If-Match`` header asks for (RFC 9110 §13.1.1): ``*`` (any current
    version) or a list of entity tags, compared strongly: a weak tag never matches."""

    any_version: bool
    strong_tags: frozenset[str]

    def matches(self, version: int) -> bool:
        return self.any_version or etag(version) in self.strong_tags

    def expected(self, version: int) -> int:
        """The version the change is held to: ``version`` when the header matches it,
        otherwise one no resource has (the service's version check then answers 412)."""
        return version if self.matches(version) else NO_VERSION


def parse_if_match(value: str | None) -> Precondition | None:
    """The precondition an ``If-Match`` value states; None when absent or blank.

    Tags are compared as text, never turned into numbers, so a tag of any length or
    alphabet is simply one that does not match; a value that is not a list of entity
    tags matches nothing either.
    """
    if value is None or not value.strip():
        return None
    if value.strip() == "*":
        return Precondition(any_version=True, strong_tags=frozenset())
    strong: set[str] = set()
    rest = value
    while rest.strip():
        rest = rest.lstrip(" \t,")
        weak = rest.startswith("W/")
        if weak:
            rest = rest[2:]
        end = rest.find('"', 1) if rest.startswith('"') else -1
        if end < 0:
            return Precondition(any_version=False, strong_tags=frozenset())
        if not weak:
            strong.add(rest[: end + 1])
        rest = rest[end + 1 :]
        if rest.strip() and not rest.lstrip(" \t").startswith(","):
            return Precondition(any_version=False, strong_tags=frozenset())
    return Precondition(any_version=False, strong_tags=frozenset(strong))


def optional_version(value: str | None, current: int) -> int | None:
    """The version an optional ``If-Match`` holds a change to (None when absent), for the
    service's ``check_version``: a tag that does not match ``current`` fails it (412)."""
    precondition = parse_if_match(value)
    return None if precondition is None else precondition.expected(current)


def required_version(value: str | None, current: int) -> int:
    """The version a required ``If-Match`` holds a change to: missing → 428 here; a tag
    that does not match ``current`` fails the service's ``check_version`` (412)."""
    precondition = parse_if_match(value)
    if precondition is None:
        raise PreconditionRequired(IF_MATCH_MISSING)
    return precondition.expected(current)


def etag(version: int) -> str:
    return f'"{version}"'


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="Optional: the ETag of the version you are changing (`*`: any version)",
    ),
]
IfMatchRequired = Annotated[
    str,
    Header(
        alias="If-Match",
        description="The ETag of the version you are changing (`*`: any version); "
        "428 when missing or empty, 412 when it does not match",
        # Documented only: an empty value is refused as missing (428), not as invalid.
        json_schema_extra={"minLength": 1},
    ),
]


def check_preconditions(
    current: int | None, if_match: str | None, if_none_match: str | None = None
) -> None:
    """RFC 9110 preconditions for a PUT that may create its resource (``current`` is the
    version, None while the resource does not exist): ``If-Match`` as everywhere (strong
    comparison, ``*`` any existing version); ``If-None-Match: *`` only a resource that does
    not exist yet. Neither header → 428; a failed one → 412."""
    precondition = parse_if_match(if_match)
    if precondition is not None:
        if current is None or not precondition.matches(current):
            raise PreconditionFailed(
                "If-Match does not name the current version"
                if current is not None
                else "There is no current version to match; create it with If-None-Match: *"
            )
        return
    if if_none_match is not None and if_none_match.strip():
        if if_none_match.strip() != "*":
            raise PreconditionFailed("If-None-Match must be * (create only if absent)")
        if current is not None:
            raise PreconditionFailed("It exists already; change it with If-Match and its ETag")
        return
    raise PreconditionRequired(
        "This change needs If-Match with the current ETag (or If-None-Match: * to create)"
    )


IfNoneMatch = Annotated[
    str | None,
    Header(alias="If-None-Match", description="`*`: create only if it does not exist yet"),
]
