from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.auth import permissions, service
from app.auth.models import User
from app.auth.roles import Role
from app.auth.schemas import (
    DirectoryEntry,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from app.deps import AdminUser, CurrentUser, Session
from app.errors import problem_responses
from app.idempotency import Idempotent
from app.kit.pagination import Cursor, Limit
from app.ministries.schemas import CODE_PATTERN
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["identity"])


_USER_FIELDS = tuple(name for name in UserOut.model_fields if name != "ministry")


def user_out(user: User) -> UserOut:
    return UserOut.model_validate(
        {**{f: getattr(user, f) for f in _USER_FIELDS}, "ministry": user.ministry.code}
    )


@router.get("/me")
async def get_me(principal: CurrentUser) -> UserOut:
    return user_out(principal.user)


@router.get("/users")
async def list_users(
    session: Session, principal: AdminUser, limit: Limit = 50, cursor: Cursor = None
) -> Page[UserOut]:
    """The users you manage (admins): your ministry's; for DOE and METI admins also every
    partner organisation's. Ordered by email."""
    users, next_cursor = await service.list_users(
        session, principal.user, limit=limit, cursor=cursor
    )
    return Page(items=[user_out(u) for u in users], next_cursor=next_cursor)


@router.post(
    "/users",
    status_code=201,
    responses=problem_responses({409: "A user with this email already exists"}),
)
async def create_user(
    data: UserCreate,
    session: Session,
    principal: AdminUser,
    response: Response,
    idempotency: Idempotent,
) -> UserOut:
    """Create a user of a ministry you manage, with a role no higher than yours."""

    async def produce() -> UserOut:
        return user_out(await service.create_user(session, data, by=principal.user))

    return await idempotency.respond(  # type: ignore[return-value]
        session,
        response,
        scope="users",
        produce=produce,
        recheck=lambda body: service.visible_user(session, principal.user, uuid.UUID(body["id"])),
    )


@router.patch("/users/{user_id}")
async def update_user(
    user_id: uuid.UUID, data: UserUpdate, session: Session, principal: AdminUser
) -> UserOut:
    return user_out(await service.update_user(session, user_id, data, by=principal.user))


@router.get("/directory")
async def search_directory(
    session: Session,
    principal: CurrentUser,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=r"^[^\x00]*$",
            description="Part of a display name (or, for DOE and METI users, of an email), "
            "in any case",
        ),
    ] = None,
    ministry: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="A ministry code, e.g. METI")
    ] = None,
    role: Annotated[list[Role] | None, Query(description="Only these roles")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DirectoryEntry]:
    """Find active users by name, to pick owners, participants and assignees."""
    users, next_cursor = await service.directory(
        session,
        principal.user,
        q=q,
        ministry=ministry,
        roles=list(role or []),
        limit=limit,
        cursor=cursor,
    )
    emails = permissions.sees_emails(principal.user)
    return Page(
        items=[
            DirectoryEntry(
                id=u.id,
                display_name=u.display_name,
                ministry=u.ministry.code,
                role=u.role,
                email=u.email if emails else None,
            )
            for u in users
        ],
        next_cursor=next_cursor,
    )


@router.get("/tokens", responses=problem_responses({404: "No such user (or not one you may see)"}))
async def list_tokens(
    session: Session,
    principal: CurrentUser,
    user_id: Annotated[
        uuid.UUID | None, Query(description="Admins: a user whose tokens you manage")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TokenOut]:
    tokens, next_cursor = await service.list_tokens(
        session, principal, user_id, limit=limit, cursor=cursor
    )
    return Page(items=[TokenOut.model_validate(t) for t in tokens], next_cursor=next_cursor)


@router.post("/tokens", status_code=201)
async def create_token(
    data: TokenCreate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> TokenCreated:
    """A new token acting as you, shown once. It expires no later than the token used to
    create it."""

    async def produce() -> TokenCreated:
        token, plaintext = await service.create_token(session, principal, data)
        return TokenCreated.model_validate(
            {**TokenOut.model_validate(token).model_dump(), "token": plaintext}
        )

    async def own_token(_: dict[str, Any]) -> None:
        """Keys are per user and a token belongs to its creator, who always sees it."""

    return await idempotency.respond(  # type: ignore[return-value]
        session,
        response,
        scope="tokens",
        produce=produce,
        recheck=own_token,
        sealed=("token",),
    )


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: uuid.UUID, session: Session, principal: CurrentUser) -> Response:
    """Revoke one of your tokens, or (admins) one of a user you manage."""
    await service.revoke_token(session, principal, token_id)
    return Response(status_code=204)
