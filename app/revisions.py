"""Which migrations this code carries and which one a database is at, without Alembic.

A server only needs revision ids: the newest one (``/readyz`` and ``rrg serve`` compare the
database with it) and the set of known ones. Reading them from the scripts' ``revision`` and
``down_revision`` assignments keeps Alembic and its templating out of the server process
(about 10 MB of resident memory); ``app.migrate`` drives Alembic itself when migrating.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

import app as app_package

VERSION_TABLE = "alembic_version"


def migrations_dir() -> Path:
    bundled = Path(app_package.__file__).parent / "_migrations"
    return bundled if bundled.is_dir() else Path(app_package.__file__).parent.parent / "migrations"


def _assignments(path: Path) -> dict[str, object]:
    """A script's module-level ``revision`` and ``down_revision`` values."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        named = isinstance(target, ast.Name) and target.id in ("revision", "down_revision")
        if named and value is not None:
            assert isinstance(target, ast.Name)
            found[target.id] = ast.literal_eval(value)
    return found


@lru_cache(maxsize=1)
def _parents() -> dict[str, tuple[str, ...]]:
    """Each revision and the revisions it follows."""
    graph: dict[str, tuple[str, ...]] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        values = _assignments(path)
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str):
            raise RuntimeError(f"{path.name} names no revision")
        graph[revision] = (down,) if isinstance(down, str) else tuple(down or ())  # type: ignore[arg-type]
    return graph


def known_revisions() -> frozenset[str]:
    """Every revision this code's migrations define (read once: /readyz asks often)."""
    return frozenset(_parents())


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision among this code's migration scripts (fixed for the process)."""
    graph = _parents()
    followed = {parent for parents in graph.values() for parent in parents}
    heads = sorted(set(graph) - followed)
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have several heads: {', '.join(heads)}")
    return heads[0] if heads else None


def is_behind(current: str | None, head: str | None) -> bool:
    """Whether a database at ``current`` lacks migrations this code needs. A revision this
    code does not know is a newer release's: during a rolling upgrade the schema is migrated
    first, and the replicas still on the previous release keep serving it."""
    if current is None:
        return True
    return current in known_revisions() and current != head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None before its first migration)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    version = connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    return None if version is None else str(version)
