"""Stateful property test: random people propose, approve, work, patch and cancel response
actions over the real API.

The machine's own model of SPEC §3 (who may make each move, computed from the actor's role,
ministry, the assignee and the incident's owners, not with the app's helpers) predicts each
answer: a move succeeds iff the edge is in ``ACTION_LIFECYCLE``, the actor is allowed and
the guards hold; a JOINT action stays ``proposed`` after one co-lead's approval and becomes
``approved`` with the other's; a refused request changes nothing (the action, the incident's
action list and its timeline).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
)

from app.actions.states import ACTION_LIFECYCLE
from tests.incidents.helpers import report
from tests.machine_driver import DrivenMachine, ministry_of, present, role_of, run_machine

T = TypeVar("T")

MINISTRIES = ("DOE", "METI")
PEOPLE = tuple(
    f"{m}:{r}"
    for m in MINISTRIES
    for r in ("viewer:1", "responder:1", "responder:2", "lead:1", "lead:2", "admin:1")
)
TEXTS = (None, "", "  ", "Customs clearance pending")
STATUSES = ("proposed", "approved", "in_progress", "blocked", "completed", "rejected", "cancelled")
TERMINAL = {"completed", "rejected", "cancelled"}
# Who may own an incident for a ministry: its responders and above.
OWNABLE = {
    m: [p for p in PEOPLE if ministry_of(p) == m and role_of(p) != "viewer"] for m in MINISTRIES
}

# SPEC §3, written out independently of the app's table (and checked against it below):
# (from, to) -> (who may, guards other than approvals).
ASSIGNEE_OR_LEAD, OWNING_LEAD, LEAD_OR_OWNER = "assignee_or_lead", "owning_lead", "lead_or_owner"
SPEC_EDGES: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("proposed", "approved"): (OWNING_LEAD, ("due_at", "assignee")),
    ("proposed", "rejected"): (OWNING_LEAD, ("reason",)),
    ("approved", "in_progress"): (ASSIGNEE_OR_LEAD, ()),
    ("in_progress", "blocked"): (ASSIGNEE_OR_LEAD, ("reason",)),
    ("blocked", "in_progress"): (ASSIGNEE_OR_LEAD, ()),
    ("in_progress", "completed"): (ASSIGNEE_OR_LEAD, ("outcome",)),
    **{
        (s, "cancelled"): (LEAD_OR_OWNER, ("reason",))
        for s in ("proposed", "approved", "in_progress", "blocked")
    },
}
GUARD_CODES = {
    "due_at": "due_at_required",
    "assignee": "assignee_required",
    "reason": "reason_required",
    "outcome": "outcome_required",
}


def required(owning: str) -> tuple[str, ...]:
    """Whose approval an action needs: its ministry's, or both co-leads' for JOINT."""
    return MINISTRIES if owning == "JOINT" else (owning,)


def when(due: str) -> str | None:
    offsets = {"future": timedelta(days=7), "past": timedelta(hours=-1)}
    return (datetime.now(UTC) + offsets[due]).isoformat() if due in offsets else None


UNKNOWN = "unknown"  # an assignee id that names no user


@dataclass
class ActionModel:
    id: str
    incident: int
    owning: str
    created_by: str
    assignee: str | None  # a person label (or UNKNOWN, never stored)
    due: str  # "none" | "future" | "past"
    status: str = "proposed"
    approvals: set[str] = field(default_factory=set)
    last: dict[str, Any] = field(default_factory=dict)  # the API's answer, verified


@dataclass
class IncidentModel:
    id: str
    status: str = "reported"
    owners: dict[str, str | None] = field(default_factory=lambda: {"DOE": None, "METI": None})
    events: int = 1  # timeline length


class ActionMachine(DrivenMachine):
    def __init__(self) -> None:
        super().__init__()
        self.people = self.api.make_people(PEOPLE)
        self.by_id = {str(a.id): label for label, a in self.people.items()}
        self.observer = self.people["DOE:admin:1"]
        self.incidents: list[IncidentModel] = []
        self.actions: list[ActionModel] = []

    def teardown(self) -> None:
        self.api.clear()

    # --- the model ------------------------------------------------------------------------

    def leads_owning(self, who: str, a: ActionModel) -> bool:
        """A lead (admins included: roles are ordered) of a ministry whose approval the
        action needs."""
        return role_of(who) in ("lead", "admin") and ministry_of(who) in required(a.owning)

    def allowed(self, who: str, a: ActionModel, rule_: str) -> bool:
        if rule_ == OWNING_LEAD:
            return self.leads_owning(who, a)
        if rule_ == LEAD_OR_OWNER:
            return self.leads_owning(who, a) or who in self.incidents[a.incident].owners.values()
        return who == a.assignee or self.leads_owning(who, a)

    def may_edit(self, who: str, a: ActionModel) -> bool:
        """Leads of the owning ministry, the incident's owners, and the proposer while the
        action is proposed."""
        return (
            self.leads_owning(who, a)
            or who in self.incidents[a.incident].owners.values()
            or (a.status == "proposed" and who == a.created_by)
        )

    def assignee_ok(self, assignee: str | None, owning: str) -> bool:
        # A user of the owning ministry (either co-lead for JOINT) who works, not a viewer.
        return assignee is None or (
            assignee != UNKNOWN
            and ministry_of(assignee) in required(owning)
            and role_of(assignee) != "viewer"
        )

    def approval_outcome(self, who: str, a: ActionModel) -> tuple[int, set[str] | None]:
        """(status, unmet codes) of an approval once the If-Match checks have passed."""
        if self.incidents[a.incident].status in ("rejected", "closed"):
            return 409, {"incident_closed"}
        if a.status != "proposed":
            return 409, {"not_proposed"}
        if not self.leads_owning(who, a):
            return 403, None
        if ministry_of(who) in a.approvals:
            return 409, None
        unmet = {
            c
            for c, ok in [
                ("due_at_required", a.due != "none"),
                ("assignee_required", a.assignee is not None),
            ]
            if not ok
        }
        if unmet:
            return 409, unmet
        if a.due == "past":
            return 422, None
        return 200, None

    # --- reading and checking -------------------------------------------------------------

    def get_action(self, a: ActionModel) -> dict[str, Any]:
        got = self.api.call("GET", f"/api/v1/actions/{a.id}", self.observer)
        assert got.status_code == 200, got.text
        assert got.headers["etag"] == f'"{got.json()["version"]}"'
        body: dict[str, Any] = got.json()
        return body

    def timeline(self, m: IncidentModel) -> list[dict[str, Any]]:
        got = self.api.call("GET", f"/api/v1/incidents/{m.id}/timeline?limit=200", self.observer)
        assert got.status_code == 200, got.text
        assert got.json()["next_cursor"] is None
        items: list[dict[str, Any]] = got.json()["items"]
        return items

    def verify(self, a: ActionModel) -> dict[str, Any]:
        body = self.get_action(a)
        assert body["status"] in ACTION_LIFECYCLE.states
        assert body["status"] == a.status, (body["status"], a)
        assert body["owning_ministry"] == a.owning
        assert body["approvals_required"] == list(required(a.owning))
        assert {x["ministry"] for x in body["approvals"]} == a.approvals, (body["approvals"], a)
        assert len(body["approvals"]) == len(a.approvals)
        assignee = body["assignee"]
        assert (self.by_id[assignee["id"]] if assignee else None) == a.assignee
        assert (body["due_at"] is not None) == (a.due != "none")
        assert body["created_by"]["id"] == str(self.people[a.created_by].id)
        a.last = body
        return body

    def expect(self, response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, (status, response.status_code, response.text)
        body: dict[str, Any] = response.json()
        if status >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert body["status"] == status
        return body

    def events_since(self, m: IncidentModel) -> list[dict[str, Any]]:
        events = self.timeline(m)
        new = events[m.events :]
        m.events = len(events)
        return new

    def unchanged(self, a: ActionModel, response: httpx.Response) -> None:
        before = a.last
        after = self.verify(a)
        assert after == before, response.text
        assert self.events_since(self.incidents[a.incident]) == [], response.text

    def pick(self, n: int, items: list[T]) -> T:
        return items[n % len(items)]

    def etag_header(self, a: ActionModel, mode: str) -> dict[str, str]:
        version = a.last["version"]
        if mode == "current":
            return {"If-Match": f'"{version}"'}
        if mode == "stale":
            return {"If-Match": f'"{version - 1 if version > 1 else version + 3}"'}
        return {}

    # --- setup: two GREEN incidents, with owners drawn at random ---------------------------

    @initialize(
        doe_owner=st.sampled_from([None, *OWNABLE["DOE"]]),
        meti_owner=st.sampled_from([None, *OWNABLE["METI"]]),
        who=st.sampled_from([p for p in PEOPLE if role_of(p) != "viewer"]),
        owning=st.sampled_from(["DOE", "METI", "JOINT"]),
        k=st.integers(0, 99),
        due=st.sampled_from(["none", "future", "past"]),
    )
    def incidents_and_a_first_action(
        self,
        doe_owner: str | None,
        meti_owner: str | None,
        who: str,
        owning: str,
        k: int,
        due: str,
    ) -> None:
        self.incidents_with_owners(doe_owner, meti_owner)
        self.propose(k % 2, who, owning, "valid", k, due)

    def incidents_with_owners(self, doe_owner: str | None, meti_owner: str | None) -> None:
        for reporter in ("DOE:responder:1", "METI:responder:2"):
            response = self.api.call(
                "POST", "/api/v1/incidents", self.people[reporter], json=report(tlp="GREEN")
            )
            self.incidents.append(IncidentModel(self.expect(response, 201)["id"]))
        self.set_owner(self.incidents[0], "DOE", doe_owner)
        self.set_owner(self.incidents[0], "METI", meti_owner)

    def set_owner(self, m: IncidentModel, ministry: str, owner: str | None) -> None:
        if owner is None:
            return
        response = self.api.call(
            "PUT",
            f"/api/v1/incidents/{m.id}/owners/{ministry}",
            self.people[f"{ministry}:lead:1"],
            json={"user_id": str(self.people[owner].id)},
        )
        self.expect(response, 200)
        if m.owners[ministry] != owner:
            assert [e["type"] for e in self.events_since(m)] == ["incident.owner_assigned"]
        m.owners[ministry] = owner

    @rule(n=st.integers(0, 9), ministry=st.sampled_from(MINISTRIES), k=st.integers(0, 99))
    def change_incident_owner(self, n: int, ministry: str, k: int) -> None:
        m = self.pick(n, self.incidents)
        if m.status == "rejected":
            return
        self.set_owner(m, ministry, self.pick(k, OWNABLE[ministry]))

    @precondition(lambda self: self.incidents[1].status != "rejected")
    @rule()
    def reject_second_incident(self) -> None:
        """The second incident is rejected: its actions can no longer change."""
        m = self.incidents[1]
        response = self.api.call(
            "POST",
            f"/api/v1/incidents/{m.id}/transitions",
            self.people["METI:lead:1"],
            json={"to": "rejected", "reason": "Not a shortage"},
            headers={
                "If-Match": self.api.call(
                    "GET", f"/api/v1/incidents/{m.id}", self.observer
                ).headers["etag"]
            },
        )
        self.expect(response, 200)
        m.status = "rejected"
        # Its open actions are cancelled, each on the timeline after the move.
        ended = [a for a in self.actions if a.incident == 1 and a.status not in TERMINAL]
        events = self.events_since(m)
        assert [e["type"] for e in events] == ["incident.status_changed"] + [
            "action.status_changed"
        ] * len(ended)
        assert {e["data"]["action_id"] for e in events[1:]} == {a.id for a in ended}
        for a in ended:
            a.status = "cancelled"
            assert self.verify(a)["closing_reason"] == "The incident was rejected: Not a shortage"

    # --- propose ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.actions) < 8)
    @rule(
        n=st.integers(0, 9),
        who=st.sampled_from(PEOPLE),
        owning=st.sampled_from(["DOE", "METI", "JOINT"]),
        assignee=st.sampled_from(["none", "valid", "valid", "wrong", "unknown"]),
        k=st.integers(0, 99),
        due=st.sampled_from(["none", "future", "future", "past"]),
    )
    def propose(self, n: int, who: str, owning: str, assignee: str, k: int, due: str) -> None:
        index = n % len(self.incidents)
        m = self.incidents[index]
        fits = [p for p in PEOPLE if ministry_of(p) in required(owning)]
        others = [p for p in PEOPLE if p not in fits]
        chosen: str | None = {
            "none": None,
            "valid": self.pick(k, fits),
            "wrong": self.pick(k, others) if others else UNKNOWN,
            "unknown": UNKNOWN,
        }[assignee]
        body: dict[str, Any] = {
            "title": "Joint procurement of gallium",
            "kind": "joint_procurement",
            "owning_ministry": owning,
        }
        if chosen is not None:
            body["assignee_id"] = (
                str(uuid.uuid4()) if chosen == UNKNOWN else str(self.people[chosen].id)
            )
        if due != "none":
            body["due_at"] = when(due)
        listing = f"/api/v1/incidents/{m.id}/actions"
        response = self.api.call("POST", listing, self.people[who], json=body)
        if role_of(who) == "viewer":
            self.expect(response, 403)
        elif m.status == "rejected":
            assert [u["code"] for u in self.expect(response, 409)["unmet"]] == ["incident_closed"]
        elif due == "past":  # new actions cannot be due in the past
            assert self.expect(response, 422)["errors"][0]["field"] == "due_at"
        elif not self.assignee_ok(chosen, owning):
            assert self.expect(response, 422)["errors"][0]["field"] == "assignee_id"
        else:
            created = self.expect(response, 201)
            assert created["status"] == "proposed" and created["approvals"] == []
            a = ActionModel(created["id"], index, owning, who, chosen, due)
            self.actions.append(a)
            assert self.verify(a) == created
            (event,) = self.events_since(m)
            assert event["type"] == "action.created"
            return
        listed = self.api.call("GET", listing, self.observer).json()["items"]
        assert sorted(x["id"] for x in listed) == sorted(
            a.id for a in self.actions if a.incident == index
        )
        assert self.events_since(m) == []

    # --- approve ------------------------------------------------------------------------------

    def approve(self, a: ActionModel, who: str, via: str, if_match: str) -> None:
        m = self.incidents[a.incident]
        if via == "approvals":
            response = self.api.call(
                "POST",
                f"/api/v1/actions/{a.id}/approvals",
                self.people[who],
                headers=self.etag_header(a, if_match),
            )
        else:
            response = self.api.call(
                "POST",
                f"/api/v1/actions/{a.id}/transitions",
                self.people[who],
                json={"to": "approved"},
                headers=self.etag_header(a, if_match),
            )
        if via == "transitions" and if_match == "missing":
            self.expect(response, 428)
        elif if_match == "stale":
            self.expect(response, 412)
        else:
            status, unmet = self.approval_outcome(who, a)
            if status == 200:
                body = self.expect(response, 201 if via == "approvals" else 200)
                a.approvals.add(ministry_of(who))
                done = set(required(a.owning)) <= a.approvals
                if done:
                    a.status = "approved"
                # JOINT: still proposed after the first co-lead, approved after the second.
                assert body["status"] == ("approved" if done else "proposed")
                assert body["version"] == a.last["version"] + 1
                assert body == self.verify(a)
                types = [e["type"] for e in self.events_since(m)]
                assert types == ["action.approved"] + (["action.status_changed"] if done else [])
                return
            problem = self.expect(response, status)
            if unmet is not None:
                assert {u["code"] for u in problem["unmet"]} == unmet, problem
        self.unchanged(a, response)

    @precondition(lambda self: self.actions)
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        via=st.sampled_from(["approvals", "approvals", "transitions"]),
        if_match=st.sampled_from(["current", "current", "current", "stale", "missing"]),
    )
    def approve_action(self, n: int, who: str, via: str, if_match: str) -> None:
        self.approve(self.pick(n, self.actions), who, via, if_match)

    @precondition(lambda self: any(a.status == "proposed" for a in self.actions))
    @rule(
        n=st.integers(0, 99),
        lead=st.sampled_from(["lead:1", "lead:2", "admin:1"]),
        prepare=st.booleans(),
    )
    def approve_by_a_co_lead(self, n: int, lead: str, prepare: bool) -> None:
        """A lead of a ministry that has not yet approved (not always of the owning one),
        after (when ``prepare``) a lead of the owning ministry set what approval needs."""
        a = self.pick(n, [a for a in self.actions if a.status == "proposed"])
        ministry = self.pick(n // 3, [x for x in MINISTRIES if x not in a.approvals])
        workable = self.incidents[a.incident].status != "rejected"
        if prepare and workable and (a.due != "future" or a.assignee is None):
            self.fix_for_approval(a, f"{required(a.owning)[0]}:lead:1")
        self.approve(a, f"{ministry}:{lead}", "approvals", "missing")

    # --- transitions --------------------------------------------------------------------------

    def move(
        self, a: ActionModel, who: str, body: dict[str, Any], if_match: str = "current"
    ) -> bool:
        target = body["to"]
        if target == "approved":
            self.approve(a, who, "transitions", if_match)
            return a.status == "approved"
        m = self.incidents[a.incident]
        response = self.api.call(
            "POST",
            f"/api/v1/actions/{a.id}/transitions",
            self.people[who],
            json=body,
            headers=self.etag_header(a, if_match),
        )
        edge = SPEC_EDGES.get((a.status, target))
        if if_match == "missing":
            self.expect(response, 428)
        elif if_match == "stale":
            self.expect(response, 412)
        elif m.status == "rejected":
            assert [u["code"] for u in self.expect(response, 409)["unmet"]] == ["incident_closed"]
        elif edge is None:
            problem = self.expect(response, 409)
            assert [u["code"] for u in problem["unmet"]] == ["no_such_transition"]
        elif not self.allowed(who, a, edge[0]):
            self.expect(response, 403)
        else:
            failing = {GUARD_CODES[g] for g in edge[1] if not present(body.get(g))}
            if failing:
                problem = self.expect(response, 409)
                assert {u["code"] for u in problem["unmet"]} == failing, problem
            else:
                moved = self.expect(response, 200)
                assert ACTION_LIFECYCLE.edge(a.status, target) is not None
                source, a.status = a.status, target
                assert moved["version"] == a.last["version"] + 1
                assert moved == self.verify(a)
                if target == "blocked":
                    assert moved["blocked_reason"] == body["reason"]
                if target == "completed":
                    assert moved["outcome"] == body["outcome"]
                (event,) = self.events_since(m)
                assert event["type"] == "action.status_changed"
                assert (event["data"]["from"], event["data"]["to"]) == (source, target)
                return True
        self.unchanged(a, response)
        return False

    @precondition(lambda self: self.actions)
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        to=st.sampled_from(STATUSES),
        reason=st.sampled_from(TEXTS),
        outcome=st.sampled_from(TEXTS),
        if_match=st.sampled_from(["current"] * 6 + ["stale", "missing"]),
    )
    def transition(
        self,
        n: int,
        who: str,
        to: str,
        reason: str | None,
        outcome: str | None,
        if_match: str,
    ) -> None:
        body: dict[str, Any] = {"to": to}
        if reason is not None:
            body["reason"] = reason
        if outcome is not None:
            body["outcome"] = outcome
        self.move(self.pick(n, self.actions), who, body, if_match)

    @precondition(lambda self: any(a.status not in TERMINAL for a in self.actions))
    @rule(n=st.integers(0, 99), k=st.integers(0, 999), steps=st.integers(1, 4))
    def step_forward(self, n: int, k: int, steps: int) -> None:
        """Take an open action up to ``steps`` edges further, each as someone the model says
        may make that move."""
        a = self.pick(n, [a for a in self.actions if a.status not in TERMINAL])
        for step in range(steps):
            if a.status in TERMINAL:
                return
            self.one_step(a, k * 11 + step)

    def one_step(self, a: ActionModel, k: int) -> None:
        targets = sorted(t for (s, t) in SPEC_EDGES if s == a.status)
        forward = [t for t in targets if t not in ("rejected", "cancelled")]
        # Mostly forward; now and then rejected or cancelled.
        target = self.pick(k // 6, forward) if k % 6 else self.pick(k // 6, targets)
        rule_ = SPEC_EDGES[(a.status, target)][0]
        allowed = [p for p in PEOPLE if self.allowed(p, a, rule_)]
        if target == "approved":
            allowed = [p for p in allowed if ministry_of(p) not in a.approvals]
        if not allowed:
            return
        who = self.pick(k // 7, allowed)
        workable = self.incidents[a.incident].status != "rejected"
        if target == "approved" and workable and (a.due != "future" or a.assignee is None):
            self.fix_for_approval(a, who)
        self.move(a, who, {"to": target, "reason": "Agreed", "outcome": "Delivered 12 t"})

    def fix_for_approval(self, a: ActionModel, lead: str) -> None:
        changes: dict[str, Any] = {"due_at": when("future")}
        if a.assignee is None:
            changes["assignee_id"] = str(self.people[f"{required(a.owning)[0]}:responder:1"].id)
        response = self.api.call(
            "PATCH",
            f"/api/v1/actions/{a.id}",
            self.people[lead],
            json=changes,
            headers=self.etag_header(a, "current"),
        )
        self.expect(response, 200)
        voided = ["action.approvals_voided"] if a.approvals else []  # a material edit
        a.due = "future"
        a.assignee = a.assignee or f"{required(a.owning)[0]}:responder:1"
        a.approvals = set()
        self.verify(a)
        assert [e["type"] for e in self.events_since(self.incidents[a.incident])] == [
            "action.updated",
            *voided,
        ]

    # --- patch ----------------------------------------------------------------------------------

    @precondition(lambda self: self.actions)
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        change=st.sampled_from(
            [
                "due_future",
                "due_past",
                "due_none",
                "assignee_valid",
                "assignee_wrong",
                "assignee_none",
                "owning_DOE",
                "owning_METI",
                "owning_JOINT",
                "title",
            ]
        ),
        k=st.integers(0, 99),
        editor=st.booleans(),
    )
    def patch(self, n: int, who: str, change: str, k: int, editor: bool) -> None:
        self.do_patch(n, who, change, k, editor)

    @precondition(lambda self: any(a.status == "proposed" and a.approvals for a in self.actions))
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        owning=st.sampled_from(["DOE", "METI", "JOINT"]),
        k=st.integers(0, 99),
    )
    def rehome_after_one_approval(self, n: int, who: str, owning: str, k: int) -> None:
        """Change the owning ministry of a JOINT action one co-lead has approved (a material
        edit: the approval given is void)."""
        self.do_patch(n, who, f"owning_{owning}", k, editor=True)

    def do_patch(self, n: int, who: str, change: str, k: int, editor: bool) -> None:
        kind, _, value = change.partition("_")
        half_approved = [a for a in self.actions if a.status == "proposed" and a.approvals]
        # Owning-ministry changes mostly on half-approved JOINT actions, where they matter.
        a = self.pick(n, half_approved if kind == "owning" and half_approved else self.actions)
        m = self.incidents[a.incident]
        if editor:  # someone the model says may edit it, if anyone
            who = self.pick(k, [p for p in PEOPLE if self.may_edit(p, a)] or [who])
        body: dict[str, Any] = {}
        new_owning, new_assignee, new_due = a.owning, a.assignee, a.due
        if kind == "due":
            new_due = value
            body["due_at"] = when(value)
        elif kind == "assignee":
            fits = [p for p in PEOPLE if ministry_of(p) in required(a.owning)]
            others = [p for p in PEOPLE if p not in fits] or [UNKNOWN]
            new_assignee = {"valid": self.pick(k, fits), "wrong": self.pick(k, others)}.get(value)
            body["assignee_id"] = (
                None
                if new_assignee is None
                else str(uuid.uuid4())
                if new_assignee == UNKNOWN
                else str(self.people[new_assignee].id)
            )
        elif kind == "owning":
            new_owning = value
            body["owning_ministry"] = value
        else:
            body["title"] = f"Retitled {k}"
        response = self.api.call(
            "PATCH",
            f"/api/v1/actions/{a.id}",
            self.people[who],
            json=body,
            headers=self.etag_header(a, "current"),
        )
        if not self.may_edit(who, a):
            self.expect(response, 403)
        elif m.status == "rejected":
            assert [u["code"] for u in self.expect(response, 409)["unmet"]] == ["incident_closed"]
        elif a.status in TERMINAL:
            self.expect(response, 409)
        elif kind == "owning" and a.status != "proposed":
            assert self.expect(response, 422)["errors"][0]["field"] == "owning_ministry"
        elif kind in ("due", "assignee") and value == "none" and a.status != "proposed":
            # What was approved keeps a due date and an assignee: changeable, not clearable.
            field = "due_at" if kind == "due" else "assignee_id"
            assert self.expect(response, 422)["errors"][0]["field"] == field
        elif kind in ("owning", "assignee") and not self.assignee_ok(new_assignee, new_owning):
            assert self.expect(response, 422)["errors"][0]["field"] == "assignee_id"
        elif kind == "due" and new_due == "past":  # a due date set is in the future
            assert self.expect(response, 422)["errors"][0]["field"] == "due_at"
        else:
            patched = self.expect(response, 200)
            changed = {
                "due": not (value == "none" == a.due),  # a new due time is always new
                "assignee": new_assignee != a.assignee,
                "owning": new_owning != a.owning,
                "title": body.get("title") != a.last["title"],
            }[kind]
            # Every field here is material: a change voids a proposed action's approvals.
            voids = changed and a.status == "proposed" and bool(a.approvals)
            version = a.last["version"]
            a.owning, a.assignee, a.due = new_owning, new_assignee, new_due
            if voids:
                a.approvals = set()
            assert patched == self.verify(a)
            assert patched["version"] == version + changed
            types = [e["type"] for e in self.events_since(m)]
            assert types == (["action.updated"] if changed else []) + (
                ["action.approvals_voided"] if voids else []
            )
            return
        self.unchanged(a, response)

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def proposed_actions_can_still_be_approved(self) -> None:
        """A proposed action lacks at least one required approval (else no one could ever
        approve it: every co-lead that may has already approved)."""
        for a in self.actions:
            assert a.status in STATUSES
            if a.status == "proposed":
                assert not set(required(a.owning)) <= a.approvals, a
            else:
                assert (
                    a.status == "rejected"
                    or a.status == "cancelled"
                    or (set(required(a.owning)) <= a.approvals)
                ), a


def test_spec_table_is_the_app_table() -> None:
    table = {(e.source, e.target) for e in ACTION_LIFECYCLE.edges}
    assert table == set(SPEC_EDGES)
    assert set(ACTION_LIFECYCLE.states) == set(STATUSES)
    assert ACTION_LIFECYCLE.terminal == TERMINAL


def test_action_machine(database_url: str) -> None:
    run_machine(ActionMachine, database_url)
