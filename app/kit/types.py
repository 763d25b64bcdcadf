"""Value types every request shares: times, bounded integers, safe text.

Each rule is stated once, here, with the JSON Schema that tells clients about it; the
input models and query parameters use these types instead of repeating the rule.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    Field,
    WithJsonSchema,
)

# --- times -------------------------------------------------------------------------------

EARLIEST_YEAR, LATEST_YEAR = 1900, 2099
TIME_RANGE = (
    f"an RFC 3339 date-time with a UTC offset (`Z` or `±hh:mm`), "
    f"in the years {EARLIEST_YEAR} to {LATEST_YEAR}"
)
# The written form: a date in range, a time, optional fraction, an explicit offset.
TIMESTAMP_PATTERN = (
    r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def _timestamp_text(value: Any) -> Any:
    """Only the written form is accepted: no numbers (epoch seconds), no naive times, no
    years whose offset could carry them past what a datetime holds."""
    if isinstance(value, datetime):
        return value  # from Python callers (CLI, demo, tests); checked after parsing
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise ValueError(f"must be {TIME_RANGE}")
    return value


def accepted_time(value: datetime) -> datetime:
    """The time as UTC when it carries an offset and lies in range; else ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a UTC offset (`Z` or `±hh:mm`)")
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be in the years {EARLIEST_YEAR} to {LATEST_YEAR}")
    return value.astimezone(UTC)


def timestamp_schema(description: str | None = None) -> dict[str, Any]:
    text = TIME_RANGE[0].upper() + TIME_RANGE[1:] + "."
    return {
        "type": "string",
        "format": "date-time",
        "pattern": TIMESTAMP_PATTERN,
        "description": f"{description} ({TIME_RANGE})." if description else text,
    }


Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp_text),
    AfterValidator(accepted_time),
    WithJsonSchema(timestamp_schema()),
]
"""A time the API accepts (body, query): aware, in range, returned as UTC."""

DATE_RANGE = f"a date (YYYY-MM-DD) in the years {EARLIEST_YEAR} to {LATEST_YEAR}"
DATE_PATTERN = r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_DATE = re.compile(DATE_PATTERN)


def _date_text(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value  # from Python callers (CSV import, demo, tests)
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError(f"must be {DATE_RANGE}")
    return value


def _date_in_range(value: date) -> date:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be {DATE_RANGE}")
    return value


CalendarDate = Annotated[
    date,
    BeforeValidator(_date_text),
    AfterValidator(_date_in_range),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
"""A calendar date the API accepts: written YYYY-MM-DD, in the same years as a Timestamp."""

# --- links -------------------------------------------------------------------------------

MAX_URL_LENGTH = 2083
URL_PATTERN = (
    r"^https?://([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*"  # a name (its last label not a number)
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
    r"([/?#][^\s]*)?$"
)
_URL = re.compile(URL_PATTERN)


def _url_text(value: Any) -> Any:
    """The contract's form of a link, checked before the URL parser sees it."""
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH or not _URL.match(value):
        raise ValueError(f"must be an http or https URL of at most {MAX_URL_LENGTH} characters")
    return value


HttpUrl = Annotated[
    AnyHttpUrl,
    BeforeValidator(_url_text),
    WithJsonSchema(
        {
            "type": "string",
            "format": "uri",
            "pattern": URL_PATTERN,
            "maxLength": MAX_URL_LENGTH,
            "description": "An http or https URL",
        }
    ),
]

# --- numbers -----------------------------------------------------------------------------

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# What an ``Integer`` column holds on every database.
NonNegativeInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]

# --- the raw-value check every input model runs ------------------------------------------


def unsafe_value(value: Any) -> str | None:
    """Why a request value cannot be stored, or None.

    Text must be valid Unicode without NUL characters (neither database stores them);
    numbers must be finite and integers must fit in 64 bits.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "must not contain NUL characters"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "must be valid Unicode text"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -INT64_MAX - 1 <= item <= INT64_MAX:
                return "must be an integer that fits in 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "must be a finite number (not NaN or Infinity)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, BaseModel):
            continue  # an input model checks its own fields
    return None
