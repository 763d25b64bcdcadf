"""Settings: production refuses default secrets, and where the timeline's audit key comes from."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import SecretStr, ValidationError

from app.config import AUDIT_KEY_CONTEXT, DEFAULT_SECRET_KEY, Settings

SECRET = "s" * 40
AUDIT = "a" * 40


def production(**values: object) -> Settings:
    return Settings(env="production", **values)  # type: ignore[arg-type]


def test_an_explicit_audit_key_is_used_as_given():
    settings = Settings(audit_key=SecretStr("the audit key"))
    assert settings.audit_key_bytes() == b"the audit key"


def test_outside_production_the_audit_key_is_derived_from_the_secret_under_a_label():
    derived = Settings(secret_key=SecretStr(SECRET), audit_key=None).audit_key_bytes()
    assert derived == hmac.new(SECRET.encode(), AUDIT_KEY_CONTEXT, hashlib.sha256).digest()
    assert SECRET.encode() not in derived and len(derived) == 32
    other = Settings(secret_key=SecretStr(SECRET + "x"), audit_key=None).audit_key_bytes()
    assert other != derived


def test_production_runs_with_a_real_secret_and_its_own_audit_key():
    settings = production(secret_key=SecretStr(SECRET), audit_key=SecretStr(AUDIT))
    assert settings.audit_key_bytes() == AUDIT.encode()


@pytest.mark.parametrize(
    ("secret", "audit", "message"),
    [
        (DEFAULT_SECRET_KEY, AUDIT, "RRG_SECRET_KEY must be set"),
        ("short", AUDIT, "RRG_SECRET_KEY must be at least 32 characters"),
        # No key named: production never runs on a key derived by default.
        (SECRET, None, "RRG_AUDIT_KEY must be set"),
        (SECRET, "too short", "RRG_AUDIT_KEY must be set"),
        (SECRET, DEFAULT_SECRET_KEY, "RRG_AUDIT_KEY must be set"),
        (SECRET, SECRET, "not RRG_SECRET_KEY"),
        (SECRET, "", "RRG_AUDIT_KEY is empty"),
    ],
)
def test_production_refuses_default_or_derived_keys(secret: str, audit: str | None, message: str):
    with pytest.raises(ValidationError, match=message):
        production(
            secret_key=SecretStr(secret), audit_key=None if audit is None else SecretStr(audit)
        )


def test_an_empty_audit_key_is_refused_everywhere():
    with pytest.raises(ValidationError, match="RRG_AUDIT_KEY is empty"):
        Settings(audit_key=SecretStr(""))
