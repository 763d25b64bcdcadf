from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.auth import service
from app.auth.models import User
from app.auth.schemas import TokenCreate, TokenCreated, TokenOut, UserCreate, UserOut, UserUpdate
from app.deps import AdminUser, CurrentUser, Session
from app.errors import problem_responses
from app.idempotency import Idempotent
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["identity"])


def user_out(user: User) -> UserOut:
    return UserOut.model_validate(
        {
            **{f: getattr(user, f) for f in UserOut.model_fields if f != "ministry"},
            "ministry": user.ministry.code,
        }
    )


@router.get("/me")
async def get_me(principal: CurrentUser) -> UserOut:
    return user_out(principal.user)


@router.get("/users")
async def list_users(session: Session, _: AdminUser) -> Page[UserOut]:
    users = await service.list_users(session)
    return Page(items=[user_out(u) for u in users], next_cursor=None)


@router.post(
    "/users",
    status_code=201,
    responses=problem_responses({409: "A user with this email already exists"}),
)
async def create_user(
    data: UserCreate,
    session: Session,
    _: AdminUser,
    response: Response,
    idempotency: Idempotent,
) -> UserOut:
    async def produce() -> UserOut:
        return user_out(await service.create_user(session, data))

    return await idempotency.respond(  # type: ignore[return-value]
        session,
        response,
        scope="users",
        produce=produce,
        recheck=lambda body: service.get_user(session, uuid.UUID(body["id"])),
    )


@router.patch("/users/{user_id}")
async def update_user(
    user_id: uuid.UUID, data: UserUpdate, session: Session, _: AdminUser
) -> UserOut:
    user = await service.get_user(session, user_id)
    return user_out(await service.update_user(session, user, data))


@router.get("/tokens")
async def list_tokens(
    session: Session,
    principal: CurrentUser,
    user_id: Annotated[uuid.UUID | None, Query(description="Admins only: another user")] = None,
) -> Page[TokenOut]:
    tokens = await service.list_tokens(session, principal, user_id)
    return Page(items=[TokenOut.model_validate(t) for t in tokens], next_cursor=None)


@router.post("/tokens", status_code=201)
async def create_token(
    data: TokenCreate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> TokenCreated:
    async def produce() -> TokenCreated:
        token, plaintext = await service.create_token(session, principal.user, data)
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
    await service.revoke_token(session, principal, token_id)
    return Response(status_code=204)
