"""Alembic, driven from code: upgrade, head and current revision."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import app as app_package

# The PostgreSQL advisory lock every `rrg migrate` holds while it upgrades (a fixed 64-bit
# key: "rrg" and "migr" in ASCII).
MIGRATION_LOCK_ID = 0x727267_6D696772


def migrations_dir() -> Path:
    bundled = Path(app_package.__file__).parent / "_migrations"
    return bundled if bundled.is_dir() else Path(app_package.__file__).parent.parent / "migrations"


def alembic_config(database_url: str, audit_key: bytes | None = None) -> Config:
    """``audit_key`` is for migrations that rewrite the timeline's hash chain; without it
    they take the key from the environment's settings."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = database_url
    if audit_key is not None:
        config.attributes["audit_key"] = audit_key
    return config


def upgrade(database_url: str, revision: str = "head", *, audit_key: bytes | None = None) -> None:
    """Run migrations (synchronously; call from a thread when a loop is running)."""
    command.upgrade(alembic_config(database_url, audit_key), revision)


def downgrade(database_url: str, revision: str, *, audit_key: bytes | None = None) -> None:
    command.downgrade(alembic_config(database_url, audit_key), revision)


def migration_audit_key(config: Config) -> bytes:
    """The audit key a migration should use: the caller's, else the environment's."""
    key = config.attributes.get("audit_key")
    if isinstance(key, bytes) and key:
        return key
    from app.config import get_settings

    return get_settings().audit_key_bytes()


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision among this code's migration scripts (fixed for the process)."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def is_behind(current: str | None, head: str | None) -> bool:
    """Whether a database at ``current`` lacks migrations this code needs. A revision this
    code does not know is a newer release's: during a rolling upgrade the schema is migrated
    first, and the replicas still on the previous release keep serving it."""
    if current is None:
        return True
    return current in known_revisions() and current != head


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every revision this code's migrations define (read once: /readyz asks often)."""
    script = ScriptDirectory.from_config(alembic_config(""))
    return frozenset(r.revision for r in script.walk_revisions())


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
