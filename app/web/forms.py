"""Helpers the web forms share: errors per field, times typed in the reader's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from app.errors import AppError, InvalidInput, TransitionRefused

GENERAL = "_"  # the key of an error that belongs to no one field
# Pydantic's reasons name its own types; a form shows these (catalogued) ones instead.
READABLE_REASONS = {
    "string_too_long": "is too long",
    "too_long": "is too long",
    "literal_error": "is not one of the allowed values",
    "enum": "is not one of the allowed values",
    "uuid_parsing": "is not a valid id",
    "bool_parsing": "must be true or false",
    "int_parsing": "must be a whole number",
    "date_parsing": "is not a valid date",
    "date_from_datetime_parsing": "is not a valid date",
    "datetime_parsing": "is not a valid date and time",
    "datetime_from_date_parsing": "is not a valid date and time",
}


def readable(err: ErrorDetails) -> str:
    """A Pydantic error's reason in words a form or page shows (and the catalogues hold)."""
    kind = err.get("type")
    message = str(err.get("msg", "invalid"))
    if kind == "missing":
        return "required"
    if kind == "string_too_short":
        return "required" if err.get("ctx", {}).get("min_length") == 1 else "is too short"
    if message.startswith("value is not a valid email address"):
        return "is not a valid email address"
    return READABLE_REASONS.get(str(kind), message.removeprefix("Value error, "))


def errors_of(exc: Exception) -> dict[str, str]:
    """Field → message for a refused form (GENERAL for what names no field)."""
    if isinstance(exc, ValidationError):
        out: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            name = loc[0] if loc else GENERAL
            out.setdefault(name, readable(err))
        return out
    if isinstance(exc, InvalidInput):
        return {
            str(e["field"]).split(".")[0]: str(e["reason"]) for e in exc.extra.get("errors", [])
        }
    if isinstance(exc, TransitionRefused):
        unmet = "; ".join(str(u["message"]) for u in exc.extra.get("unmet", []))
        return {GENERAL: f"{exc.detail}: {unmet}" if unmet else exc.detail}
    if isinstance(exc, AppError):
        return {GENERAL: exc.detail}
    raise exc


def status_of(exc: Exception) -> int:
    if isinstance(exc, AppError):
        return exc.status
    return 422


def local_time(value: str | None, timezone: str) -> datetime | str | None:
    """A ``datetime-local`` value read in the reader's zone, as an aware UTC time; other
    text is returned as it is, for the schema to refuse with a reason."""
    if value is None or not value.strip():
        return None
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=ZoneInfo(timezone))
    return naive.astimezone(UTC)


def optional(value: str | None) -> str | None:
    return value.strip() if value is not None and value.strip() else None
