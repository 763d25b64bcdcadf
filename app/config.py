"""One Settings object, read from the environment (prefix ``RRG_``)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 - refused in production
DEFAULT_DATABASE_URL = "sqlite:///var/rrg.db"
# The fixed context label of the timeline key derived from RRG_SECRET_KEY: the same secret
# used elsewhere yields an unrelated key here.
AUDIT_KEY_CONTEXT = b"rrg/timeline-audit-key/v1"
MIN_PRODUCTION_SECRET = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RRG_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    # Keys the timeline's hash chain (HMAC-SHA256); never stored in the database. Unset
    # (development and tests only): derived from secret_key (see audit_key_bytes).
    audit_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    scheduler: Literal["on", "off"] = "on"
    sweep_interval_seconds: float = Field(default=30, gt=0)
    # Webhooks (SPEC §7). The allowlist names hosts and CIDRs that may be reached over plain
    # HTTP and at loopback/private addresses: comma-separated, or a JSON list.
    webhook_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Keys encrypting subscription secrets at rest: "kid:base64-of-32-bytes", comma-separated,
    # the first encrypts; unset, one key is derived from RRG_SECRET_KEY.
    webhook_keys: SecretStr | None = None
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=60)
    webhook_concurrency: int = Field(default=64, ge=1, le=1024)
    webhook_concurrency_per_subscription: int = Field(default=16, ge=1, le=1024)
    webhook_lease_seconds: float = Field(default=60, gt=0)
    webhook_poll_seconds: float = Field(default=1, gt=0)
    webhook_retention_days: int = Field(default=30, ge=1)
    # The web client (SPEC §9): how long a browser stays signed in (refreshed while used),
    # and the failed sign-ins allowed per account and per client address within a window.
    web_session_hours: float = Field(default=12, gt=0, le=24 * 30)
    signin_window_seconds: int = Field(default=900, ge=1)
    signin_max_failures_per_account: int = Field(default=5, ge=1)
    signin_max_failures_per_address: int = Field(default=20, ge=1)
    log_level: str = "INFO"
    # json: one JSON object per line (the default in production); console: for people.
    log_format: Literal["json", "console"] | None = None
    # A bearer token that opens GET /metrics only (for the Prometheus server); without it,
    # /metrics takes an admin's API token.
    metrics_token: SecretStr | None = None
    # On SIGTERM, how long requests in flight may take to finish before the server stops.
    shutdown_grace_seconds: float = Field(default=30, ge=0, le=3600)
    # rrg worker serves /healthz, /readyz and /metrics on this port (none if unset).
    worker_port: int | None = Field(default=None, ge=1, le=65535)
    max_body_bytes: int = 1024 * 1024
    # How long a resolved API token may be reused by this process without reading it again
    # (seconds; 0: read on every request). Changes committed through the service drop it at
    # once (on PostgreSQL in every process); this bounds what else may go unseen.
    principal_cache_seconds: float = Field(default=5, ge=0, le=300)
    # Connection pool for PostgreSQL (per process). Connections beyond the pool's size are
    # closed when returned; opening one costs more than a create, so the pool keeps most.
    db_pool_size: int = 20
    db_max_overflow: int = 10

    @field_validator("webhook_allowlist", mode="before")
    @classmethod
    def _allowlist_entries(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(value, list):
            return value
        entries = [str(v).strip().lower() for v in value if str(v).strip()]
        for entry in entries:
            _check_allowlist_entry(entry)
        return entries

    @field_validator("metrics_token", "webhook_keys", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # An orchestrator that passes every variable passes the unused ones empty.
        return None if value == "" else value

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.env == "production" and (not secret or secret == DEFAULT_SECRET_KEY):
            raise ValueError(
                "RRG_SECRET_KEY must be set to a non-default value when RRG_ENV=production"
            )
        if self.env == "production" and len(secret) < MIN_PRODUCTION_SECRET:
            raise ValueError("RRG_SECRET_KEY must be at least 32 characters in production")
        if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 16:
            raise ValueError("RRG_METRICS_TOKEN must be at least 16 characters")
        if self.audit_key is not None and not self.audit_key.get_secret_value():
            raise ValueError("RRG_AUDIT_KEY is empty: set a key, or unset it to derive one")
        if self.env == "production":
            # A derived key would tie the audit trail to the session secret (rotating one
            # would break every chain), so production names its key.
            audit = self.audit_key.get_secret_value() if self.audit_key is not None else ""
            if len(audit) < MIN_PRODUCTION_SECRET or audit in (DEFAULT_SECRET_KEY, secret):
                raise ValueError(
                    "RRG_AUDIT_KEY must be set when RRG_ENV=production: at least 32 "
                    "characters, not a default value and not RRG_SECRET_KEY"
                )
        return self

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.env == "production" else "console"

    def audit_key_bytes(self) -> bytes:
        """The timeline's HMAC key: RRG_AUDIT_KEY as given, or else (outside production)
        derived from RRG_SECRET_KEY by HMAC-SHA256 under a fixed context label."""
        if self.audit_key is not None:
            return self.audit_key.get_secret_value().encode()
        secret = self.secret_key.get_secret_value().encode()
        return hmac.new(secret, AUDIT_KEY_CONTEXT, hashlib.sha256).digest()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        """The database file of an embedded SQLite URL (``None`` for other databases)."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[1] if ":///" in self.database_url else ""
        return Path(path) if path and path != ":memory:" else None


def _check_allowlist_entry(entry: str) -> None:
    """An allowlist entry is an IP address, a CIDR, or a host name."""
    try:
        ipaddress.ip_network(entry.strip("[]"), strict=False)
        return
    except ValueError:
        pass
    labels = entry.rstrip(".").split(".")
    if not all(label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels):
        raise ValueError(f"webhook allowlist entry {entry!r} is neither a host name nor a CIDR")


@lru_cache
def get_settings() -> Settings:
    return Settings()
