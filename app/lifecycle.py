"""Lifecycles as data: a table of (from, to) edges, each with guards. No I/O here.

The same table answers the service (may this move happen?), the API's 409 ``unmet``
list, the web client's disabled buttons and the property-based tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.errors import Forbidden, TransitionRefused

C = TypeVar("C")


@dataclass(frozen=True)
class Guard(Generic[C]):
    """A condition an edge needs; ``code`` is stable for clients, ``message`` is for people."""

    code: str
    message: str
    holds: Callable[[C], bool]


@dataclass(frozen=True)
class Edge(Generic[C]):
    """A permitted move. ``who`` (when set) says who may make it: failing it is 403,
    failing a guard is 409."""

    source: str
    target: str
    guards: tuple[Guard[C], ...] = ()
    who: Guard[C] | None = None


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

    def permitted(self, source: str, target: str, context: C) -> bool:
        edge = self.edge(source, target)
        return edge is not None and (edge.who is None or edge.who.holds(context))

    def check(self, source: str, target: str, context: C) -> None:
        """Refuse unless the move is allowed now: 403 when the actor may not make it,
        409 listing every unmet guard when the state of things does not allow it."""
        failed = self.unmet(source, target, context)
        edge = self.edge(source, target)
        if edge is not None and edge.who is not None and not edge.who.holds(context):
            raise Forbidden(f"Not allowed to move this {self.name} to {target}: {edge.who.message}")
        if failed:
            raise TransitionRefused(
                f"The {self.name} cannot move from {source} to {target} yet",
                describe(failed),
            )


def describe(guards: Iterable[Guard[C]]) -> list[dict[str, str]]:
    return [{"code": g.code, "message": g.message} for g in guards]


def edges(
    sources: Iterable[str], target: str, *guards: Guard[C], who: Guard[C] | None = None
) -> list[Edge[C]]:
    """Edges from several states to one target sharing the same guards."""
    return [Edge(s, target, tuple(guards), who) for s in sources]
