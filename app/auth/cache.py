"""Resolved API tokens, kept in this process for a few seconds.

Every API request resolves its bearer token; the answer changes only when a user, a token or
a ministry changes, which is rare. An entry is keyed by the token's SHA-256 (never the token),
holds plain values (every request builds its own detached ``User``, so no ORM instance is
shared between requests) and is served for at most ``max_age`` seconds after it was read.

A committed change to users, API tokens or ministries drops every entry, as ``app.caches``
drops every process cache: in this process at commit, in the others through the commit's
notification; on PostgreSQL the cache serves only while that notification is heard
(``caches.serving``). A change made outside the service is seen once the entries it affects
are ``max_age`` old. Token expiry is checked against the clock on every request, cached or
not.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm.attributes import instance_state

from app import caches
from app.auth.models import ApiToken, User
from app.ministries.models import Ministry

CAPACITY = 10_000  # tokens kept; the least recently used goes first


IdentityKey = tuple[Any, ...]


def _detached(model: type[Any], values: dict[str, Any], key: IdentityKey) -> Any:
    """A detached instance of ``model`` holding ``values`` (every column, loaded), as a
    session leaves what it loaded once it closes; built without attribute events."""
    instance = model.__mapper__.class_manager.new_instance()
    instance.__dict__.update(values)
    instance_state(instance).key = key
    return instance


def _loaded(instance: object) -> tuple[dict[str, Any], IdentityKey]:
    """The column values and identity of an instance a session loaded."""
    state = inspect(instance)
    assert state.key is not None
    values = {attr.key: state.dict[attr.key] for attr in state.mapper.column_attrs}
    return values, state.key


@dataclass(frozen=True, slots=True)
class CachedToken:
    """A live token, and its user's and ministry's column values."""

    token_id: uuid.UUID
    expires_at: datetime | None
    last_used_at: datetime | None
    user_values: dict[str, Any]
    user_key: IdentityKey
    ministry_values: dict[str, Any]
    ministry_key: IdentityKey

    @classmethod
    def of(cls, token: ApiToken, user: User) -> CachedToken:
        user_values, user_key = _loaded(user)
        ministry_values, ministry_key = _loaded(user.ministry)
        return cls(
            token_id=token.id,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            user_values=user_values,
            user_key=user_key,
            ministry_values=ministry_values,
            ministry_key=ministry_key,
        )

    def user(self) -> User:
        """A new detached ``User`` (with its ministry) for one request."""
        ministry = _detached(Ministry, self.ministry_values, self.ministry_key)
        values = {**self.user_values, "ministry": ministry}
        user: User = _detached(User, values, self.user_key)
        return user


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before reading a token: an answer read across a drop is not kept."""

    generation: int
    read_at: float


class PrincipalCache:
    # What a caller's principal is made of: a committed change to one of these drops it.
    tables = frozenset({"users", "api_tokens", "ministries"})

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[float, CachedToken]] = OrderedDict()
        self._generation = itertools.count()
        self.generation = next(self._generation)

    def ticket(self) -> Ticket:
        return Ticket(self.generation, time.monotonic())

    def get(self, token_hash: str, max_age: float) -> CachedToken | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        read_at, cached = entry
        if time.monotonic() - read_at > max_age:
            self._entries.pop(token_hash, None)
            return None
        self._entries.move_to_end(token_hash)
        return cached

    def put(self, token_hash: str, cached: CachedToken, ticket: Ticket) -> None:
        if ticket.generation != self.generation:
            return  # a change committed while it was read: it may predate it
        self._entries[token_hash] = (ticket.read_at, cached)
        self._entries.move_to_end(token_hash)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def touched(self, token_hash: str, at: datetime) -> None:
        """Record a new last use of a cached token (its age is unchanged)."""
        entry = self._entries.get(token_hash)
        if entry is not None:
            read_at, cached = entry
            self._entries[token_hash] = (read_at, replace(cached, last_used_at=at))

    def drop(self) -> None:
        # A new dict rather than clear(): a commit on another thread may call this.
        self.generation = next(self._generation)
        self._entries = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)


principals = PrincipalCache()
caches.watch(principals)
