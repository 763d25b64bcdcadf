"""The incident lifecycle (SPEC §2) as a pure table of edges and guards."""

from __future__ import annotations

from dataclasses import dataclass

from app.incidents.vocabulary import STATUSES
from app.lifecycle import Edge, Guard, Lifecycle, edges

OPEN_STATUSES = ("watch", "reported", "triaged", "responding", "monitoring", "resolved")
# Where response actions are proposed (SPEC §3): not while watched, nor once resolved.
TAKES_ACTIONS = ("reported", "triaged", "responding", "monitoring")


@dataclass(frozen=True)
class IncidentFacts:
    """What the guards look at: a snapshot of the incident and the request."""

    severity: str | None = None
    has_doe_owner: bool = False
    has_meti_owner: bool = False
    live_actions: int = 0  # actions neither rejected nor cancelled
    open_actions: int = 0  # actions not completed, rejected or cancelled
    reason: str | None = None
    resolution_summary: str | None = None
    duplicate_of_valid: bool = True
    doe_signed_off: bool = False
    meti_signed_off: bool = False


def _present(text: str | None) -> bool:
    return bool(text and text.strip())


REASON = Guard[IncidentFacts](
    "reason_required", "a reason is required", lambda f: _present(f.reason)
)
DUPLICATE_OF = Guard[IncidentFacts](
    "duplicate_of_invalid",
    "duplicate_of must name another incident you can see",
    lambda f: f.duplicate_of_valid,
)
SEVERITY = Guard[IncidentFacts](
    "severity_required", "severity must be set", lambda f: f.severity is not None
)
DOE_OWNER = Guard[IncidentFacts](
    "doe_owner_required", "a DOE owner must be assigned", lambda f: f.has_doe_owner
)
METI_OWNER = Guard[IncidentFacts](
    "meti_owner_required", "a METI owner must be assigned", lambda f: f.has_meti_owner
)
LIVE_ACTION = Guard[IncidentFacts](
    "live_action_required",
    "at least one response action that is not rejected or cancelled is required",
    lambda f: f.live_actions > 0,
)
RESOLUTION = Guard[IncidentFacts](
    "resolution_summary_required",
    "a resolution summary is required",
    lambda f: _present(f.resolution_summary),
)
NO_OPEN_ACTIONS = Guard[IncidentFacts](
    "open_actions",
    "every response action must be completed, rejected or cancelled",
    lambda f: f.open_actions == 0,
)
DOE_SIGNOFF = Guard[IncidentFacts](
    "doe_signoff_required",
    "a DOE lead or owner must sign off the current resolution",
    lambda f: f.doe_signed_off,
)
METI_SIGNOFF = Guard[IncidentFacts](
    "meti_signoff_required",
    "a METI lead or owner must sign off the current resolution",
    lambda f: f.meti_signed_off,
)

INCIDENT_LIFECYCLE = Lifecycle[IncidentFacts](
    name="incident",
    states=STATUSES,
    terminal=frozenset({"closed", "rejected"}),
    edges=[
        Edge("watch", "reported"),
        *edges(("watch", "reported"), "rejected", REASON, DUPLICATE_OF),
        Edge("reported", "triaged", (SEVERITY, DOE_OWNER, METI_OWNER)),
        Edge("triaged", "responding", (LIVE_ACTION,)),
        Edge("responding", "monitoring"),
        Edge("monitoring", "responding", (REASON,)),
        *edges(("responding", "monitoring"), "resolved", RESOLUTION, NO_OPEN_ACTIONS),
        Edge("resolved", "responding", (REASON,)),
        Edge("resolved", "closed", (DOE_SIGNOFF, METI_SIGNOFF, NO_OPEN_ACTIONS)),
    ],
)
