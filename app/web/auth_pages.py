"""Sign-in, sign-out and the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.auth import service as auth_service
from app.deps import get_database
from app.web import sessions
from app.web.security import (
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    WebUser,
    csrf_token_for,
    presession_value,
    set_cookie,
    settings_of,
)
from app.web.templating import gettext_for, language_of, render

router = APIRouter()
PRESESSION_MAX_AGE = 3600


def safe_next(value: str | None) -> str:
    """Only a path on this site: never another host (open redirect)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


async def _signin_page(
    request: Request, *, next_: str, email: str = "", error: str | None = None, status: int = 200
) -> Response:
    value, new = presession_value(request)
    secret = settings_of(request).secret_key.get_secret_value()
    response = await render(
        request,
        "signin.html",
        None,
        {
            "signin_csrf": csrf_token_for(secret, value),
            "next": next_,
            "email": email,
            "error": error,
        },
        status_code=status,
    )
    if new:
        set_cookie(request, response, PRESESSION_COOKIE, value, PRESESSION_MAX_AGE)
    return response


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:
    return await _signin_page(request, next_=safe_next(next))


@router.post("/signin")
async def signin(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    settings = settings_of(request)
    address = request.client.host if request.client else "unknown"
    async with get_database(request).unit_of_work() as session:
        user, limited = await sessions.sign_in(session, settings, email, password, address)
        token = await sessions.start(session, user, settings) if user is not None else None
    _ = gettext_for(language_of(request, None))
    if limited:
        return await _signin_page(
            request,
            next_=safe_next(next),
            email=email,
            error=_("Too many failed sign-ins. Wait a few minutes and try again."),
            status=429,
        )
    if token is None:
        return await _signin_page(
            request,
            next_=safe_next(next),
            email=email,
            error=_("The email or password is not right."),
            status=401,
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, int(settings.web_session_hours * 3600))
    response.delete_cookie(PRESESSION_COOKIE, path="/")
    return response


@router.post("/signout")
async def signout(request: Request, web: WebUser) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    async with get_database(request).unit_of_work() as session:
        await sessions.end(session, token)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/preferences/language")
async def set_language(
    request: Request,
    web: WebUser,
    language: Annotated[str, Form()],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    async with get_database(request).unit_of_work() as session:
        user = await auth_service.visible_user(session, web.user, web.user.id)
        await auth_service.set_language(session, user, language)
    return RedirectResponse(safe_next(next), status_code=303)
