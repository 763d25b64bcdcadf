"""Errors on web pages: the same domain errors as the API, shown as pages people read
(the API keeps its problem+json)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import AppError, InvalidInput
from app.web.forms import readable
from app.web.security import SignInRequired, is_web_path
from app.web.templating import render

Handler = Callable[[Request, Exception], Awaitable[Response]]


def _status_and_detail(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, RequestValidationError):
        return 422, "Invalid input"
    if isinstance(exc, AppError):
        return exc.status, exc.detail
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, str(exc.detail)
    return 500, "An internal error occurred; it has been logged."


def _field_errors(exc: Exception) -> list[tuple[str, str]]:
    """(parameter, reason) for a request refused for its values: a malformed query or
    path parameter, or a value a rule refused."""
    if isinstance(exc, RequestValidationError):
        return [
            (".".join(str(p) for p in tuple(err.get("loc", ()))[1:]) or "request", readable(err))
            for err in exc.errors()
        ]
    if isinstance(exc, InvalidInput):
        return [(str(e["field"]), str(e["reason"])) for e in exc.extra.get("errors", [])]
    return []


async def error_page(request: Request, exc: Exception) -> Response:
    status, detail = _status_and_detail(exc)
    fields = _field_errors(exc)
    web = None
    user = getattr(request.state, "web_user", None)
    if user is not None:
        from app.auth.service import Principal
        from app.web.security import WebPrincipal

        web = WebPrincipal(Principal(user=user), "")
    return await render(
        request,
        "error.html",
        web,
        {"status": status, "detail": detail, "fields": fields},
        status_code=status,
    )


async def sign_in_required(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = "/signin?next=" + quote(target, safe="")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": location})
    if request.method not in ("GET", "HEAD"):
        return await error_page(request, AppError("Sign in first"))
    return RedirectResponse(location, status_code=303)


def install_web_error_pages(app: FastAPI) -> None:
    """Wrap the API's handlers: web paths get an HTML page, the rest what they had."""
    app.add_exception_handler(SignInRequired, sign_in_required)
    for kind in (AppError, StarletteHTTPException, RequestValidationError):
        api_handler = cast(Handler, app.exception_handlers[kind])

        def dispatch(api: Handler) -> Handler:
            async def handle(request: Request, exc: Exception) -> Response:
                if is_web_path(request.url.path):
                    return await error_page(request, exc)
                return await api(request, exc)

            return handle

        app.add_exception_handler(kind, dispatch(api_handler))
