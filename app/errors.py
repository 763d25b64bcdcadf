"""Domain errors and their one mapping to RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("rrg.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:rrg:problem:"


class AppError(Exception):
    """A refusal a client can act on. Subclasses fix the status and problem type."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra or {}
        self.headers = headers or {}


class Unauthorized(AppError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(AppError):
    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(AppError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequired(AppError):
    status, slug, title = 428, "precondition-required", "Precondition required"


class InvalidInput(AppError):
    """A well-formed request whose values break a rule; names the field."""

    status, slug, title = 422, "validation-error", "Invalid input"

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        location: str = "body",
        also: Sequence[tuple[str, str]] = (),
    ) -> None:
        problems = [(field, reason), *also]
        super().__init__(
            "; ".join(f"{f}: {r}" for f, r in problems),
            extra={
                "errors": [{"location": location, "field": f, "reason": r} for f, r in problems]
            },
        )

    @classmethod
    def all_of(cls, problems: Sequence[tuple[str, str]], *, location: str = "body") -> InvalidInput:
        """One refusal naming every (field, reason) at fault (at least one)."""
        (field, reason), *also = problems
        return cls(field, reason, location=location, also=also)


class TransitionRefused(AppError):
    """A lifecycle move whose guards do not hold; lists every unmet guard."""

    status, slug, title = 409, "transition-refused", "Transition refused"

    def __init__(self, detail: str, unmet: Sequence[dict[str, str]]) -> None:
        super().__init__(detail, extra={"unmet": list(unmet)})


# --- the documented shape --------------------------------------------------------------


class FieldProblem(BaseModel):
    location: str = Field(description="`body`, `query`, `path` or `header`")
    field: str = Field(description="The field, dotted for nested ones (`sources.0.url`)")
    reason: str


class UnmetGuard(BaseModel):
    code: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail: every 4xx and 5xx answer."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem (`urn:rrg:problem:...`)")
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] = Field(
        default_factory=list, description="Invalid input (422): each field and why"
    )
    unmet: list[UnmetGuard] = Field(
        default_factory=list, description="A refused transition (409): every unmet guard"
    )


PROBLEM_SCHEMA_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for problems a route gives beyond those derived from its
    signature (``app.contract``), e.g. ``{409: "The action is not proposed"}``."""
    return {
        status: {"description": text, "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA_REF}}}
        for status, text in described.items()
    }


IF_MATCH_MISSING = "This change needs an If-Match header with the ETag (or `*`)"
# Required headers whose absence has a status of its own (RFC 6585: 428 for If-Match).
MISSING_HEADER_ERRORS: dict[str, Callable[[], AppError]] = {
    "if-match": lambda: PreconditionRequired(IF_MATCH_MISSING)
}


def problem(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": type_ or "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_name(loc: Sequence[int | str]) -> tuple[str, str]:
    location = str(loc[0]) if loc else "body"
    rest = [str(part) for part in loc[1:]]
    return location, ".".join(rest) if rest else location


def validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    out = []
    for err in errors:
        location, field = _field_name(err.get("loc", ()))
        reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            reason = "unknown field"
        out.append({"location": location, "field": field, "reason": reason})
    return out


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem(
        exc.status,
        title=exc.title,
        detail=exc.detail,
        type_=PROBLEM_BASE + exc.slug,
        headers=exc.headers,
        **exc.extra,
    )


def _missing_header_error(errors: Sequence[Any]) -> AppError | None:
    """The error for a request whose only fault is a missing header with its own status."""
    kinds = {
        MISSING_HEADER_ERRORS.get(str(err.get("loc", ("", ""))[-1]).lower())
        if err.get("type") == "missing" and tuple(err.get("loc", ()))[:1] == ("header",)
        else None
        for err in errors
    }
    if len(kinds) == 1 and (make := kinds.pop()) is not None:
        return make()
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    special = _missing_header_error(exc.errors())
    if special is not None:
        return await _app_error(request, special)
    errors = validation_errors(exc.errors())
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) or "invalid request"
    return problem(
        422,
        title="Invalid input",
        detail=detail,
        type_=PROBLEM_BASE + "validation-error",
        errors=errors,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, detail=detail, headers=dict(exc.headers or {}))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, detail="An internal error occurred; it has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
    install_database_error_handlers(app)


def install_database_error_handlers(app: FastAPI) -> None:
    """A versioned row changed under us between read and write: the client's copy is stale
    (412). A lost database connection: 503, to be retried."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm.exc import StaleDataError

    async def _stale(_: Request, exc: Exception) -> JSONResponse:
        return problem(
            412,
            title=PreconditionFailed.title,
            detail="The resource was changed by someone else; fetch it again",
            type_=PROBLEM_BASE + PreconditionFailed.slug,
        )

    app.add_exception_handler(StaleDataError, _stale)

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not _lost_the_database(exc):
            return await _unhandled(request, exc)
        logger.warning(
            "the database is unavailable on %s %s: %s", request.method, request.url.path, exc
        )
        return problem(
            503,
            detail="The database is unavailable; retry shortly (nothing was changed)",
            headers={"Retry-After": "1"},
        )

    app.add_exception_handler(DBAPIError, _database_unavailable)
    app.add_exception_handler(OSError, _database_unavailable)


def _lost_the_database(exc: BaseException) -> bool:
    """A lost or refused database connection (as opposed to a query the database refused):
    the request rolled back, and the same request may succeed in a moment."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, OSError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, InterfaceError | OperationalError):
            return True
        return isinstance(exc.orig, OSError) or "connection" in type(exc.orig).__name__.lower()
    return False
