"""Alembic, driven from code: upgrade and downgrade (``app.revisions`` reads revision ids
without it)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from app.revisions import migrations_dir

# The PostgreSQL advisory lock every `rrg migrate` holds while it upgrades (a fixed 64-bit
# key: "rrg" and "migr" in ASCII).
MIGRATION_LOCK_ID = 0x727267_6D696772


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
