"""Logging: every log line of the process through one handler (structlog's formatter over
the standard library's logging), as JSON lines in production.

Each line carries the request id of the request it belongs to (``X-Request-ID``: taken
from the request when it is sane, else generated; echoed in the response), and nothing
secret: values under secret-sounding keys, bearer credentials, API tokens (``rrg_…``)
and webhook secrets (``whsec_…``) are masked wherever they appear in a line.
"""

from __future__ import annotations

import logging
import random
import re
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Literal

import structlog
from asgi_correlation_id import correlation_id

LogFormat = Literal["json", "console"]

REQUEST_ID_HEADER = "X-Request-ID"
# A sane incoming request id: what proxies and tracers send (UUIDs, hex, base64url, dotted
# or dashed ids), short, on one line; anything else is replaced by a generated one.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")

REDACTED = "[redacted]"
# Keys whose values are never logged, whatever they hold.
_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|authori[sz]ation|cookie|credential|api[-_]?key|signature",
    re.IGNORECASE,
)
# Secrets recognisable by their form, wherever they appear in a line.
_SECRET_TEXT = (
    (re.compile(r"\brrg_[A-Za-z0-9_-]{16,}"), "rrg_" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{8,}"), "whsec_" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b(rrg_session|session)=[^;\s,]+"), r"\1=" + REDACTED),
)


def valid_request_id(value: str) -> bool:
    return _SANE_REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """32 hex digits. An id needs to be unique, not secret: the process's random generator
    (seeded from the OS, reseeded in a forked child) costs a fraction of ``os.urandom``,
    which every request would otherwise wait on."""
    return f"{random.getrandbits(128):032x}"


def request_id() -> str | None:
    """The id of the request being served (None outside one)."""
    return correlation_id.get()


def scrub(text: str) -> str:
    """``text`` with every secret recognisable by its form masked."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _scrub_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and value not in (None, "", REDACTED):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(key, v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every field of the line (the message and the
    formatted traceback included)."""
    for key in list(event_dict):
        if key in ("level", "logger", "timestamp", "request_id"):
            continue
        event_dict[key] = _scrub_value(key if key != "event" else "", event_dict[key])
    return event_dict


def add_request_id(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    rid = correlation_id.get()
    if rid is not None:
        event_dict.setdefault("request_id", rid)
    return event_dict


def _drop_color_message(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # uvicorn repeats each message with terminal colours as an extra field.
    event_dict.pop("color_message", None)
    return event_dict


def formatter(fmt: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every line: timestamp, level, logger, request id, the message and
    its extra fields, the traceback, secrets masked; JSON or a console rendering."""
    pre_chain: Iterable[Callable[..., Any]] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        add_request_id,
        _drop_color_message,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    final: list[Callable[..., Any]] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    ]
    if fmt == "json":
        final.append(structlog.processors.format_exc_info)
    final += [redact_secrets, renderer]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=list(pre_chain), processors=final)


def configure_logging(level: str = "INFO", fmt: LogFormat = "json") -> None:
    """Route every logger (the service's, uvicorn's, SQLAlchemy's…) through one handler on
    stderr. Idempotent: a second call replaces the handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.set_name("rrg")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "rrg"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers log through the root handler too (uvicorn is told not to configure
    # logging); its access log is replaced by the service's, which knows the route and id.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces its plugins at INFO on every start.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
