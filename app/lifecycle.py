"""Lifecycles as data: a table of (from, to) edges, each with guards. No I/O here.

The same table answers the service (may this move happen?), the API's 409 ``unmet``
list, the web client's disabled buttons and the property-based tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.errors import TransitionRefused

C = TypeVar("C")


@dataclass(frozen=True)
class Guard(Generic[C]):
    """A condition an edge needs; ``code`` is stable for clients, ``message`` is for people."""

    code: str
    message: str
    holds: Callable[[C], bool]


@dataclass(frozen=True)
class Edge(Generic[C]):
    source: str
    target: str
    guards: tuple[Guard[C], ...] = ()


@dataclass
class Lifecycle(Generic[C]):
    name: str
    states: tuple[str, ...]
    terminal: frozenset[str]
    edges: list[Edge[C]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_pair = {(e.source, e.target): e for e in self.edges}
        for e in self.edges:
            assert e.source in self.states and e.target in self.states, e

    def edge(self, source: str, target: str) -> Edge[C] | None:
        return self._by_pair.get((source, target))

    def targets(self, source: str) -> list[str]:
        return [e.target for e in self.edges if e.source == source]

    def unmet(self, source: str, target: str, context: C) -> list[Guard[C]]:
        """Every guard of the edge that does not hold (empty: the move is allowed).

        Raises TransitionRefused when there is no such edge at all.
        """
        edge = self.edge(source, target)
        if edge is None:
            allowed = ", ".join(self.targets(source)) or "none (terminal)"
            raise TransitionRefused(
                f"A {self.name} cannot move from {source} to {target}; from {source}: {allowed}",
                [{"code": "no_such_transition", "message": f"{source} → {target} is not allowed"}],
            )
        return [g for g in edge.guards if not g.holds(context)]

    def check(self, source: str, target: str, context: C) -> None:
        """Refuse (409, listing every unmet guard) unless the move is allowed now."""
        failed = self.unmet(source, target, context)
        if failed:
            raise TransitionRefused(
                f"The {self.name} cannot move from {source} to {target} yet",
                describe(failed),
            )


def describe(guards: Iterable[Guard[C]]) -> list[dict[str, str]]:
    return [{"code": g.code, "message": g.message} for g in guards]


def edges(sources: Iterable[str], target: str, *guards: Guard[C]) -> list[Edge[C]]:
    """Edges from several states to one target sharing the same guards."""
    return [Edge(s, target, tuple(guards)) for s in sources]
