"""What guards every web page: the session cookie, CSRF, and the security headers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.models import User
from app.auth.service import Principal
from app.config import Settings
from app.deps import READ_METHODS, get_database
from app.errors import Forbidden
from app.web import sessions

SESSION_COOKIE = "rrg_session"
# Before sign-in there is no session to tie a CSRF token to: this random cookie stands in.
PRESESSION_COOKIE = "rrg_presession"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

# No inline script or style anywhere, no eval: htmx is configured for that (base.html).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# The API and its interactive documentation keep their own headers.
_NOT_WEB = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics")


def is_web_path(path: str) -> bool:
    return not path.startswith(_NOT_WEB)


class SecurityHeaders:
    """Adds the security headers to every web response (a plain ASGI middleware, so the
    live stream is not buffered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_web_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in present]
                if https:
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token_for(secret: str, cookie_value: str) -> str:
    """The CSRF token of a session (or pre-session) cookie: an HMAC under the secret key,
    so nothing extra is stored and a token works only with its own cookie."""
    digest = hmac.new(secret.encode(), b"csrf:" + cookie_value.encode(), hashlib.sha256)
    return digest.hexdigest()


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def secure_cookies(request: Request) -> bool:
    """Secure cookies when served over HTTPS (directly, or behind a proxy uvicorn trusts)
    and always in production."""
    return request.url.scheme == "https" or settings_of(request).env == "production"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )


def presession_value(request: Request) -> tuple[str, bool]:
    """The pre-session cookie's value, and whether it is new (to be set)."""
    existing = request.cookies.get(PRESESSION_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return secrets.token_urlsafe(24), True


def expected_csrf(request: Request) -> str | None:
    cookie = request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE)
    if not cookie:
        return None
    return csrf_token_for(settings_of(request).secret_key.get_secret_value(), cookie)


def _same_origin(request: Request) -> bool:
    """Refuse what a browser tells us came from another site (Sec-Fetch-Site, Origin)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1] == host
    return True


async def verify_csrf(request: Request) -> None:
    """Every state-changing web request carries the session's CSRF token, in the form
    field ``csrf_token`` or the ``X-CSRF-Token`` header (htmx), and comes from this site."""
    if request.method in READ_METHODS:
        return
    if not _same_origin(request):
        raise Forbidden("Cross-site request refused")
    expected = expected_csrf(request)
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise Forbidden("The form's CSRF token is missing or invalid; reload the page")


class SignInRequired(Exception):
    """No live web session: pages redirect to the sign-in page."""


@dataclass(frozen=True)
class WebPrincipal:
    principal: Principal
    csrf_token: str

    @property
    def user(self) -> User:
        return self.principal.user


async def current_web_user(request: Request) -> WebPrincipal:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    settings = settings_of(request)
    db = get_database(request)
    async with db.unit_of_work(readonly=True) as session:
        found = await sessions.resolve(session, token)
    if found is None:
        raise SignInRequired
    web_session, user = found
    if sessions.needs_touch(web_session):
        async with db.unit_of_work() as writer:
            await sessions.touch(writer, web_session, settings)
    request.state.web_user = user
    return WebPrincipal(
        Principal(user=user), csrf_token_for(settings.secret_key.get_secret_value(), token)
    )


WebUser = Annotated[WebPrincipal, Depends(current_web_user)]
