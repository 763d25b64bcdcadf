"""The one place a web page is rendered: the Jinja environments (one per language) and the
context every template shares (the user, CSRF token, language, clocks, unread count)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app import clock
from app.deps import get_database
from app.notifications import service as notifications
from app.web import markdown
from app.web.i18n import LANGUAGES, Formatter, pick_language, translations
from app.web.security import CSRF_FIELD, CSRF_HEADER, WebPrincipal

TEMPLATES = Path(__file__).parent / "templates"
# Pages showing a secret, and live fragments, are never cached.
NO_STORE = {"Cache-Control": "no-store"}


@cache
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["markdown"] = markdown.render
    # Translate a value (a status, a guard's message): the result is plain text, escaped
    # like any other, whereas ``_()`` marks its result safe and is for literals only.
    env.filters["t"] = translations(language).gettext
    return env


def load_catalogues() -> None:
    """Compile every catalogue now (at startup), so a broken .po fails early."""
    for language in LANGUAGES:
        environment(language)


def language_of(request: Request, web: WebPrincipal | None) -> str:
    return pick_language(
        web.user.language if web is not None else None, request.headers.get("accept-language")
    )


def gettext_for(language: str) -> Any:
    return translations(language).gettext


async def render(
    request: Request,
    template: str,
    web: WebPrincipal | None,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    language = language_of(request, web)
    unread = 0
    if web is not None and not template.startswith("fragments/"):
        async with get_database(request).unit_of_work(readonly=True) as session:
            unread = await notifications.unread_count(session, web.user)
    timezone = web.user.timezone if web is not None else "America/New_York"
    shared = {
        "request": request,
        "web": web,
        "user": web.user if web is not None else None,
        "csrf_field": CSRF_FIELD,
        "csrf_header": CSRF_HEADER,
        "csrf_token": web.csrf_token if web is not None else "",
        "lang": language,
        "languages": LANGUAGES,
        "fmt": Formatter(language, timezone, clock.now()),
        "unread": unread,
        "path": request.url.path,
    }
    html = environment(language).get_template(template).render({**shared, **(context or {})})
    return HTMLResponse(html, status_code=status_code, headers=headers)
