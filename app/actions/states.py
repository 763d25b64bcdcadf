"""The response-action lifecycle (SPEC §3): who may make each move, and its guards."""

from __future__ import annotations

from dataclasses import dataclass

from app.actions.vocabulary import STATUSES
from app.lifecycle import Edge, Guard, Lifecycle, edges

TERMINAL = frozenset({"completed", "rejected", "cancelled"})
OPEN = tuple(s for s in STATUSES if s not in TERMINAL)
# Actions that count as "live" for the incident's triaged → responding guard.
LIVE = tuple(s for s in STATUSES if s not in ("rejected", "cancelled"))


@dataclass(frozen=True)
class ActionFacts:
    """What the table looks at: the action, the request, and who is asking."""

    has_due_at: bool = False
    has_assignee: bool = False
    approvals_missing: tuple[str, ...] = ()
    reason: str | None = None
    outcome: str | None = None
    actor_is_assignee: bool = False
    actor_leads_owning_ministry: bool = False
    actor_owns_incident: bool = False


def _present(text: str | None) -> bool:
    return bool(text and text.strip())


DUE_AT = Guard[ActionFacts]("due_at_required", "due_at must be set", lambda f: f.has_due_at)
ASSIGNEE = Guard[ActionFacts](
    "assignee_required", "an assignee must be set", lambda f: f.has_assignee
)
APPROVALS = Guard[ActionFacts](
    "approvals_missing",
    "a lead of each co-lead ministry must approve a JOINT action",
    lambda f: not f.approvals_missing,
)
REASON = Guard[ActionFacts]("reason_required", "a reason is required", lambda f: _present(f.reason))
OUTCOME = Guard[ActionFacts](
    "outcome_required", "an outcome note is required", lambda f: _present(f.outcome)
)

OWNING_LEAD = Guard[ActionFacts](
    "owning_ministry_lead",
    "a lead of the owning ministry",
    lambda f: f.actor_leads_owning_ministry,
)
ASSIGNEE_OR_LEAD = Guard[ActionFacts](
    "assignee_or_lead",
    "the assignee or a lead of the owning ministry",
    lambda f: f.actor_is_assignee or f.actor_leads_owning_ministry,
)
LEAD_OR_INCIDENT_OWNER = Guard[ActionFacts](
    "lead_or_incident_owner",
    "a lead of the owning ministry or an owner of the incident",
    lambda f: f.actor_leads_owning_ministry or f.actor_owns_incident,
)

ACTION_LIFECYCLE = Lifecycle[ActionFacts](
    name="action",
    states=STATUSES,
    terminal=TERMINAL,
    edges=[
        Edge("proposed", "approved", (DUE_AT, ASSIGNEE, APPROVALS), OWNING_LEAD),
        Edge("proposed", "rejected", (REASON,), OWNING_LEAD),
        Edge("approved", "in_progress", (), ASSIGNEE_OR_LEAD),
        Edge("in_progress", "blocked", (REASON,), ASSIGNEE_OR_LEAD),
        Edge("blocked", "in_progress", (), ASSIGNEE_OR_LEAD),
        Edge("in_progress", "completed", (OUTCOME,), ASSIGNEE_OR_LEAD),
        *edges(OPEN, "cancelled", REASON, who=LEAD_OR_INCIDENT_OWNER),
    ],
)
