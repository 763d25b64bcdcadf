"""Stateful property test: random walks through the incident lifecycle over the real API.

A Hypothesis state machine reports incidents, assigns owners (of the right and the wrong
ministry), sets severity, works response actions, signs off and tries transitions to random
targets as random people. Its own model (written from SPEC §1-§3, not from the app's
helpers) predicts every answer: who may move an incident, which guards fail (the 409
``unmet`` codes, exactly), and that a refused request changes nothing. Every observed status
change must be an edge of ``INCIDENT_LIFECYCLE``.
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

from app.incidents.states import INCIDENT_LIFECYCLE, STATUSES
from tests.incidents.helpers import report
from tests.machine_driver import DrivenMachine, ministry_of, present, role_of, run_machine

T = TypeVar("T")

MINISTRIES = ("DOE", "METI")
ROLES = ("viewer", "responder", "lead", "admin")
# Two people of each role in each ministry, so some viewers/responders stay non-owners.
PEOPLE = tuple(f"{m}:{r}:{n}" for m in MINISTRIES for r in ROLES for n in (1, 2))
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
TEXTS = (None, "", "   ", "Allied producers restored supply")

# SPEC §2, written out independently of the app's table (and checked against it below).
SPEC_EDGES = {
    ("watch", "reported"),
    ("watch", "rejected"),
    ("reported", "rejected"),
    ("reported", "triaged"),
    ("triaged", "responding"),
    ("responding", "monitoring"),
    ("monitoring", "responding"),
    ("responding", "resolved"),
    ("monitoring", "resolved"),
    ("resolved", "responding"),
    ("resolved", "closed"),
}
TERMINAL = {"closed", "rejected"}
# SPEC §3: actions are proposed while the incident is reported ... monitoring.
TAKES_ACTIONS = {"reported", "triaged", "responding", "monitoring"}
ACTION_OPEN = {"proposed", "approved", "in_progress", "blocked"}
ACTION_LIVE = ACTION_OPEN | {"completed"}


@dataclass
class ActionModel:
    owning: str
    status: str = "proposed"
    approvals: set[str] = field(default_factory=set)
    assignee: str = ""  # a person label


@dataclass
class IncidentModel:
    id: str
    key: str
    status: str
    reporter: str
    severity: str | None = None
    participants: set[str] = field(default_factory=set)
    owners: dict[str, str | None] = field(default_factory=lambda: {"DOE": None, "METI": None})
    actions: dict[str, ActionModel] = field(default_factory=dict)
    signoffs: set[str] = field(default_factory=set)  # ministries, current resolution
    last: Snapshot | None = None  # the API's answer after the latest step on it


@dataclass
class Snapshot:
    incident: dict[str, Any]
    etag: str
    timeline: list[dict[str, Any]]
    actions: list[dict[str, Any]]


def same_incident(after: Snapshot, before: Snapshot) -> bool:
    """The incident itself did not change (timeline activity only touches updated_at)."""
    ignore = {"updated_at"}
    return {k: v for k, v in after.incident.items() if k not in ignore} == {
        k: v for k, v in before.incident.items() if k not in ignore
    } and after.etag == before.etag


class IncidentLifecycleMachine(DrivenMachine):
    def __init__(self) -> None:
        super().__init__()
        self.people = self.api.make_people(PEOPLE)
        self.by_id = {str(a.id): label for label, a in self.people.items()}
        self.observer = self.people["DOE:admin:1"]
        self.incidents: list[IncidentModel] = []

    def teardown(self) -> None:
        self.api.clear()

    # --- the model: who may do what, which guards fail --------------------------------

    def is_owner(self, label: str, m: IncidentModel) -> bool:
        return label in m.owners.values()

    def may_move(self, label: str, m: IncidentModel) -> bool:
        """SPEC §1: leads (of DOE/METI, both co-leads), admins, and the incident's owners."""
        return role_of(label) in ("lead", "admin") or self.is_owner(label, m)

    def may_sign_off(self, label: str, m: IncidentModel) -> bool:
        """A lead (or admin) of DOE or METI, or that ministry's owner of the incident."""
        return role_of(label) in ("lead", "admin") or m.owners[ministry_of(label)] == label

    def failing_guards(self, m: IncidentModel, target: str, body: dict[str, Any]) -> set[str]:
        source, out = m.status, set()
        live = [a for a in m.actions.values() if a.status in ACTION_LIVE]
        open_ = [a for a in m.actions.values() if a.status in ACTION_OPEN]
        if target == "rejected":
            if not present(body.get("reason")):
                out.add("reason_required")
            dup = body.get("duplicate_of")
            if dup is not None and not any(
                dup in (other.id, other.key) and other.id != m.id for other in self.incidents
            ):
                out.add("duplicate_of_invalid")
        elif target == "triaged":
            if m.severity is None:
                out.add("severity_required")
            if m.owners["DOE"] is None:
                out.add("doe_owner_required")
            if m.owners["METI"] is None:
                out.add("meti_owner_required")
        elif target == "responding" and source == "triaged":
            if not live:
                out.add("live_action_required")
        elif target == "responding":  # monitoring → responding, resolved → responding (reopen)
            if not present(body.get("reason")):
                out.add("reason_required")
        elif target == "resolved":
            if not present(body.get("resolution_summary")):
                out.add("resolution_summary_required")
            if open_:
                out.add("open_actions")
        elif target == "closed":
            if "DOE" not in m.signoffs:
                out.add("doe_signoff_required")
            if "METI" not in m.signoffs:
                out.add("meti_signoff_required")
            if open_:
                out.add("open_actions")
        return out

    # --- reading the API --------------------------------------------------------------

    def snapshot(self, m: IncidentModel) -> Snapshot:
        url = f"/api/v1/incidents/{m.id}"
        got = self.api.call("GET", url, self.observer)
        assert got.status_code == 200, got.text
        events: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page_url = f"{url}/timeline?limit=200" + (f"&cursor={cursor}" if cursor else "")
            page = self.api.call("GET", page_url, self.observer)
            assert page.status_code == 200, page.text
            events += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        actions = self.api.call("GET", f"{url}/actions", self.observer)
        assert actions.status_code == 200, actions.text
        return Snapshot(got.json(), got.headers["etag"], events, actions.json()["items"])

    def verify(self, m: IncidentModel, snap: Snapshot | None = None) -> Snapshot:
        """The API agrees with the model; a status the model did not expect is a failure."""
        snap = snap or self.snapshot(m)
        body = snap.incident
        assert body["status"] in STATUSES
        assert body["status"] == m.status, (body["status"], m.status)
        assert snap.etag == f'"{body["version"]}"'
        assert body["severity"] == m.severity
        for ministry in MINISTRIES:
            owner = body["owners"][ministry]
            assert (self.by_id[owner["id"]] if owner else None) == m.owners[ministry]
        assert {s["ministry"] for s in body["signoffs"]} == m.signoffs, (body["signoffs"], m)
        assert len(body["signoffs"]) == len(m.signoffs)
        assert {self.by_id[p["id"]] for p in body["participants"]} == m.participants
        assert {a["id"]: a["status"] for a in snap.actions} == {
            i: a.status for i, a in m.actions.items()
        }
        m.last = snap
        return snap

    def current(self, m: IncidentModel) -> Snapshot:
        """The state before a step: what the API answered (and was verified) after the
        previous step on this incident; nothing else changes it."""
        return m.last or self.verify(m)

    def assert_unchanged(self, before: Snapshot, m: IncidentModel, response: Any) -> None:
        after = self.snapshot(m)
        assert after.incident == before.incident, response.text
        assert after.etag == before.etag
        assert len(after.timeline) == len(before.timeline), response.text
        assert after.actions == before.actions
        self.verify(m, after)

    def expect(self, response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, (status, response.status_code, response.text)
        body: dict[str, Any] = response.json()
        if status >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert body["status"] == status
        return body

    def pick(self, n: int, items: list[T]) -> T:
        return items[n % len(items)]

    # --- incidents ----------------------------------------------------------------------

    @initialize(
        who=st.sampled_from([p for p in PEOPLE if role_of(p) != "viewer"]),
        status=st.sampled_from(["watch", "reported"]),
        severity=st.sampled_from([None, *SEVERITIES]),
    )
    def first_incident(self, who: str, status: str, severity: str | None) -> None:
        self.report(who, status, severity)

    @precondition(lambda self: len(self.incidents) < 3)
    @rule(
        who=st.sampled_from(PEOPLE),
        status=st.sampled_from(["watch", "reported"]),
        severity=st.sampled_from([None, *SEVERITIES]),
    )
    def report_incident(self, who: str, status: str, severity: str | None) -> None:
        self.report(who, status, severity)

    def report(self, who: str, status: str, severity: str | None) -> None:
        response = self.api.call(
            "POST",
            "/api/v1/incidents",
            self.people[who],
            json=report(status=status, severity=severity, tlp="GREEN"),
        )
        if role_of(who) == "viewer":
            self.expect(response, 403)
            return
        body = self.expect(response, 201)
        assert body["status"] == status and body["version"] == 1
        m = IncidentModel(body["id"], body["key"], status, who, severity)
        self.incidents.append(m)
        snap = self.verify(m)
        assert [e["type"] for e in snap.timeline] == ["incident.created"]

    def attempt_transition(
        self, m: IncidentModel, who: str, body: dict[str, Any], if_match: str = "current"
    ) -> None:
        before = self.current(m)
        version = before.incident["version"]
        headers = {}
        if if_match == "current":
            headers["If-Match"] = before.etag
        elif if_match == "stale":
            headers["If-Match"] = f'"{version - 1 if version > 1 else version + 7}"'
        response = self.api.call(
            "POST",
            f"/api/v1/incidents/{m.id}/transitions",
            self.people[who],
            json=body,
            headers=headers,
        )
        source, target = m.status, body["to"]
        if target not in STATUSES:
            self.expect(response, 422)
        elif if_match == "missing":
            self.expect(response, 428)
        elif not self.may_move(who, m):
            # Viewers and responders who do not own the incident may never move it.
            assert role_of(who) in ("viewer", "responder") and not self.is_owner(who, m)
            self.expect(response, 403)
        elif if_match == "stale":
            self.expect(response, 412)
        elif (source, target) not in SPEC_EDGES:
            problem = self.expect(response, 409)
            assert [u["code"] for u in problem["unmet"]] == ["no_such_transition"]
        else:
            failing = self.failing_guards(m, target, body)
            if failing:
                problem = self.expect(response, 409)
                codes = [u["code"] for u in problem["unmet"]]
                assert sorted(codes) == sorted(failing), (codes, failing)
            else:
                self.expect(response, 200)
                self.after_move(m, who, body, before, response)
                return
        self.assert_unchanged(before, m, response)

    def after_move(
        self,
        m: IncidentModel,
        who: str,
        body: dict[str, Any],
        before: Snapshot,
        response: httpx.Response,
    ) -> None:
        source, target = m.status, body["to"]
        # Only leads, admins and the incident's owners ever move it.
        assert role_of(who) in ("lead", "admin") or self.is_owner(who, m)
        # The move is an edge of the one table, and every guard held in the API's own
        # state just before it.
        assert INCIDENT_LIFECYCLE.edge(source, target) is not None
        old = before.incident
        statuses = [a["status"] for a in before.actions]
        if target == "triaged":
            assert old["severity"] and old["owners"]["DOE"] and old["owners"]["METI"]
        elif target == "responding" and source == "triaged":
            assert any(s not in ("rejected", "cancelled") for s in statuses)
        elif target == "responding" or target == "rejected":
            assert present(body.get("reason"))
        elif target == "resolved":
            assert present(body.get("resolution_summary"))
            assert all(s in ("completed", "rejected", "cancelled") for s in statuses)
        elif target == "closed":
            assert {s["ministry"] for s in old["signoffs"]} >= {"DOE", "METI"}
            assert all(s in ("completed", "rejected", "cancelled") for s in statuses)
        m.status = target
        if target in ("resolved", "responding"):
            m.signoffs = set()  # a new resolution, or a reopen: earlier sign-offs are void
        # Ending an incident cancels its open actions, each on the timeline after the move.
        cancelled = []
        if target in TERMINAL:
            cancelled = [i for i, a in m.actions.items() if a.status in ACTION_OPEN]
            for action_id in cancelled:
                m.actions[action_id].status = "cancelled"
        after = self.verify(m)
        assert response.json() == after.incident
        assert after.incident["version"] == old["version"] + 1  # one move, one version
        assert len(after.timeline) == len(before.timeline) + 1 + len(cancelled)
        cancellations = after.timeline[len(after.timeline) - len(cancelled) :]
        assert [(e["type"], e["data"]["action_id"]) for e in cancellations] == [
            ("action.status_changed", i) for i in cancelled
        ]
        event = after.timeline[len(before.timeline)]
        assert event["type"] == "incident.status_changed"
        assert event["data"]["from"] == source and event["data"]["to"] == target
        assert event["actor"]["user"]["id"] == str(self.people[who].id)
        if target == "rejected":
            dup = body.get("duplicate_of")
            expected = next((o.id for o in self.incidents if dup in (o.id, o.key)), None)
            assert after.incident["duplicate_of"] == expected
            assert after.incident["rejection_reason"] == body["reason"]
        if target == "resolved":
            assert after.incident["resolution_summary"] == body["resolution_summary"]
            assert after.incident["resolved_at"] is not None
        if target == "triaged":
            assert after.incident["triaged_at"] is not None
        if target == "closed":
            assert after.incident["closed_at"] is not None

    @precondition(lambda self: self.incidents)
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        to=st.sampled_from([*STATUSES, "archived"]),
        reason=st.sampled_from(TEXTS),
        summary=st.sampled_from(TEXTS),
        dup=st.sampled_from(["absent", "self", "other", "missing"]),
        if_match=st.sampled_from(["current"] * 6 + ["stale", "missing"]),
    )
    def transition(
        self,
        n: int,
        who: str,
        to: str,
        reason: str | None,
        summary: str | None,
        dup: str,
        if_match: str,
    ) -> None:
        m = self.pick(n, self.incidents)
        body: dict[str, Any] = {"to": to}
        if reason is not None:
            body["reason"] = reason
        if summary is not None:
            body["resolution_summary"] = summary
        others = [o for o in self.incidents if o.id != m.id]
        if dup == "self":
            body["duplicate_of"] = m.key if n % 2 else m.id
        elif dup == "other":
            other = self.pick(n, others) if others else None
            body["duplicate_of"] = (other.key if n % 2 else other.id) if other else "RRG-99999"
        elif dup == "missing":
            body["duplicate_of"] = str(uuid.uuid4())
        self.attempt_transition(m, who, body, if_match)

    # --- triage: owners and severity -----------------------------------------------------

    def assign(self, m: IncidentModel, who: str, ministry: str, owner: str, etag: bool) -> None:
        before = self.current(m)
        response = self.api.call(
            "PUT",
            f"/api/v1/incidents/{m.id}/owners/{ministry}",
            self.people[who],
            json={"user_id": str(self.people[owner].id)},
            headers={"If-Match": before.etag} if etag else None,
        )
        if not self.may_move(who, m):
            self.expect(response, 403)
        elif m.status in TERMINAL:
            self.expect(response, 409)
        elif ministry_of(owner) != ministry or role_of(owner) == "viewer":
            # An owner is a responder or above of that ministry.
            problem = self.expect(response, 422)
            assert problem["errors"][0]["field"] == "user_id"
        else:
            self.expect(response, 200)
            changed = m.owners[ministry] != owner
            m.owners[ministry] = owner
            after = self.verify(m)
            assert len(after.timeline) == len(before.timeline) + changed
            if changed:
                assert after.timeline[-1]["type"] == "incident.owner_assigned"
            return
        self.assert_unchanged(before, m, response)

    def set_severity(self, m: IncidentModel, who: str, severity: str | None) -> None:
        before = self.current(m)
        response = self.api.call(
            "PATCH",
            f"/api/v1/incidents/{m.id}",
            self.people[who],
            json={"severity": severity},
            headers={"If-Match": before.etag},
        )
        if not self.may_move(who, m):
            self.expect(response, 403)
            self.assert_unchanged(before, m, response)
            return
        self.expect(response, 200)
        changed = m.severity != severity
        m.severity = severity
        after = self.verify(m)
        assert len(after.timeline) == len(before.timeline) + changed
        assert after.incident["status"] == before.incident["status"]

    @precondition(lambda self: self.incidents)
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        ministry=st.sampled_from(MINISTRIES),
        owner=st.sampled_from(PEOPLE),
        etag=st.booleans(),
    )
    def assign_owner(self, n: int, who: str, ministry: str, owner: str, etag: bool) -> None:
        self.assign(self.pick(n, self.incidents), who, ministry, owner, etag)

    @precondition(lambda self: any(m.status not in TERMINAL for m in self.incidents))
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        severity=st.sampled_from([None, *SEVERITIES]),
    )
    def change_severity(self, n: int, who: str, severity: str | None) -> None:
        self.set_severity(
            self.pick(n, [m for m in self.incidents if m.status not in TERMINAL]), who, severity
        )

    # --- response actions (through the actions API) --------------------------------------

    def add_action(self, m: IncidentModel, who: str, owning: str, k: int) -> str | None:
        # Anyone of the owning ministry who works (viewers cannot be assigned).
        candidates = [
            p
            for p in PEOPLE
            if (owning == "JOINT" or ministry_of(p) == owning) and role_of(p) != "viewer"
        ]
        assignee = self.pick(k, candidates)
        before = self.current(m)
        response = self.api.call(
            "POST",
            f"/api/v1/incidents/{m.id}/actions",
            self.people[who],
            json={
                "title": "Release national stockpile",
                "kind": "stockpile_release",
                "owning_ministry": owning,
                "assignee_id": str(self.people[assignee].id),
                "due_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            },
        )
        if role_of(who) == "viewer":
            self.expect(response, 403)
        elif m.status in TERMINAL:
            problem = self.expect(response, 409)
            assert [u["code"] for u in problem["unmet"]] == ["incident_closed"]
        elif m.status not in TAKES_ACTIONS:
            problem = self.expect(response, 409)
            assert [u["code"] for u in problem["unmet"]] == ["incident_not_taking_actions"]
        else:
            action = self.expect(response, 201)
            assert action["status"] == "proposed"
            m.actions[action["id"]] = ActionModel(owning, assignee=assignee)
            after = self.verify(m)
            assert same_incident(after, before)  # proposing does not move the incident
            return str(action["id"])
        self.assert_unchanged(before, m, response)
        return None

    def action_call(
        self, m: IncidentModel, action_id: str, who: str, path: str, body: Any = None
    ) -> tuple[httpx.Response, Snapshot]:
        before = self.current(m)
        (version,) = [a["version"] for a in before.actions if a["id"] == action_id]
        response = self.api.call(
            "POST",
            f"/api/v1/actions/{action_id}/{path}",
            self.people[who],
            json=body,
            headers={"If-Match": f'"{version}"'},
        )
        if m.status in TERMINAL:
            problem = self.expect(response, 409)
            assert [u["code"] for u in problem["unmet"]] == ["incident_closed"]
            self.assert_unchanged(before, m, response)
        return response, before

    def approve(self, m: IncidentModel, action_id: str, rank: str, n: int) -> None:
        a = m.actions[action_id]
        needed = MINISTRIES if a.owning == "JOINT" else (a.owning,)
        missing = [x for x in needed if x not in a.approvals]
        ministry = self.pick(n, missing)
        response, before = self.action_call(
            m, action_id, f"{ministry}:{rank}:{n % 2 + 1}", "approvals"
        )
        if m.status in TERMINAL:
            return
        body = self.expect(response, 201)
        a.approvals.add(ministry)
        if a.approvals >= set(needed):
            a.status = "approved"
        assert body["status"] == a.status
        after = self.verify(m)
        assert same_incident(after, before)

    def work(self, m: IncidentModel, action_id: str, to: str, who: str, body: Any) -> None:
        response, before = self.action_call(m, action_id, who, "transitions", {"to": to, **body})
        if m.status in TERMINAL:
            return
        self.expect(response, 200)
        m.actions[action_id].status = to
        after = self.verify(m)
        assert same_incident(after, before)  # actions never move the incident

    def owning_lead(self, a: ActionModel, n: int) -> str:
        ministry = self.pick(n, list(MINISTRIES)) if a.owning == "JOINT" else a.owning
        return f"{ministry}:{self.pick(n // 2, ['lead', 'admin'])}:{n % 2 + 1}"

    @precondition(lambda self: self.incidents)
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        owning=st.sampled_from(["DOE", "METI", "JOINT"]),
        k=st.integers(0, 99),
    )
    def propose_action(self, n: int, who: str, owning: str, k: int) -> None:
        self.add_action(self.pick(n, self.incidents), who, owning, k)

    def actions_in(self, statuses: set[str]) -> list[tuple[IncidentModel, str]]:
        return [
            (m, i) for m in self.incidents for i, a in m.actions.items() if a.status in statuses
        ]

    @precondition(lambda self: self.actions_in({"proposed"}))
    @rule(n=st.integers(0, 99), rank=st.sampled_from(["lead", "admin"]))
    def approve_action(self, n: int, rank: str) -> None:
        m, action_id = self.pick(n, self.actions_in({"proposed"}))
        self.approve(m, action_id, rank, n)

    @precondition(lambda self: self.actions_in({"approved", "in_progress", "blocked"}))
    @rule(n=st.integers(0, 99), by_assignee=st.booleans())
    def progress_action(self, n: int, by_assignee: bool) -> None:
        m, action_id = self.pick(n, self.actions_in({"approved", "in_progress", "blocked"}))
        a = m.actions[action_id]
        who = a.assignee if by_assignee else self.owning_lead(a, n)
        if a.status == "in_progress":
            self.work(m, action_id, "completed", who, {"outcome": "10 t delivered"})
        else:
            self.work(m, action_id, "in_progress", who, {})

    @precondition(lambda self: self.actions_in(ACTION_OPEN))
    @rule(n=st.integers(0, 99), reject=st.booleans())
    def end_action(self, n: int, reject: bool) -> None:
        m, action_id = self.pick(n, self.actions_in(ACTION_OPEN))
        a = m.actions[action_id]
        to = "rejected" if reject and a.status == "proposed" else "cancelled"
        self.work(m, action_id, to, self.owning_lead(a, n), {"reason": "Not needed any more"})

    # --- the happy path, so that deep states are reached ---------------------------------

    @precondition(lambda self: any(m.status not in TERMINAL for m in self.incidents))
    @rule(n=st.integers(0, 99), k=st.integers(0, 999), steps=st.integers(1, 6))
    def push(self, n: int, k: int, steps: int) -> None:
        """Take an incident up to ``steps`` edges forward: meet the next edge's guards
        through the API (owners, severity, actions, sign-offs; each step checked), then
        have a randomly chosen mover make the move."""
        m = self.pick(n, [m for m in self.incidents if m.status not in TERMINAL])
        for step in range(steps):
            if m.status in TERMINAL:
                return
            k = k * 7 + step
            target = self.next_target(m, k)
            self.meet_guards(m, target, k)
            body: dict[str, Any] = {"to": target, "reason": "Agreed at the daily call"}
            if target == "resolved":
                body["resolution_summary"] = "Alternative supply contracted"
            movers = [p for p in PEOPLE if self.may_move(p, m)]
            self.attempt_transition(m, self.pick(k // 5, movers), body)
            assert m.status == target

    def next_target(self, m: IncidentModel, k: int) -> str:
        return {
            "watch": "reported" if k % 4 else "rejected",
            "reported": "triaged" if k % 6 else "rejected",
            "triaged": "responding",
            "responding": "resolved" if k % 3 else "monitoring",
            "monitoring": "resolved" if k % 3 else "responding",
            "resolved": "closed" if k % 4 else "responding",
        }[m.status]

    def meet_guards(self, m: IncidentModel, target: str, k: int) -> None:
        doe = [p for p in PEOPLE if ministry_of(p) == "DOE" and role_of(p) != "viewer"]
        meti = [p for p in PEOPLE if ministry_of(p) == "METI" and role_of(p) != "viewer"]
        lead = self.pick(k, ["DOE:lead:1", "METI:lead:2", "METI:admin:1", "DOE:admin:2"])
        if target == "triaged":
            if m.owners["DOE"] is None:
                self.assign(m, lead, "DOE", self.pick(k // 3, doe), etag=bool(k % 2))
            if m.owners["METI"] is None:
                self.assign(m, lead, "METI", self.pick(k // 7, meti), etag=True)
            if m.severity is None:
                self.set_severity(m, lead, self.pick(k, list(SEVERITIES)))
        elif target == "responding" and m.status == "triaged":
            if not any(a.status in ACTION_LIVE for a in m.actions.values()):
                owning = self.pick(k, ["DOE", "METI", "JOINT"])
                action_id = self.add_action(
                    m, self.pick(k, ["DOE:responder:1", "METI:lead:1"]), owning, k
                )
                assert action_id is not None
                if k % 2:
                    self.approve_fully(m, action_id, k)
        elif target == "resolved":
            for action_id in list(m.actions):
                self.finish(m, action_id, k)
                k //= 2
        elif target in ("closed", "responding") and m.status == "resolved":
            # Closing needs both sign-offs; a reopen must void whatever was signed.
            for ministry in MINISTRIES if target == "closed" or k // 4 % 2 else ():
                if ministry not in m.signoffs:
                    eligible = [
                        p for p in PEOPLE if ministry_of(p) == ministry and self.may_sign_off(p, m)
                    ]
                    self.sign(m, self.pick(k, eligible))

    def approve_fully(self, m: IncidentModel, action_id: str, k: int) -> None:
        while m.actions[action_id].status == "proposed":
            self.approve(m, action_id, self.pick(k, ["lead", "admin"]), k)
            k += 1

    def finish(self, m: IncidentModel, action_id: str, k: int) -> None:
        """Bring an action to a terminal state: reject, cancel or work it to completion."""
        a = m.actions[action_id]
        if a.status not in ACTION_OPEN:
            return
        lead = self.owning_lead(a, k)
        if k % 5 == 0:
            self.work(m, action_id, "cancelled", lead, {"reason": "Superseded"})
            return
        if a.status == "proposed":
            if k % 5 == 1:
                self.work(m, action_id, "rejected", lead, {"reason": "Too costly"})
                return
            self.approve_fully(m, action_id, k)
        if a.status in ("approved", "blocked"):
            self.work(m, action_id, "in_progress", a.assignee if k % 2 else lead, {})
        self.work(m, action_id, "completed", lead if k % 3 else a.assignee, {"outcome": "Done"})

    # --- participants ------------------------------------------------------------------------

    def may_name(self, label: str, m: IncidentModel) -> bool:
        """SPEC §6: the owners, leads (admins included) and the reporter."""
        return role_of(label) in ("lead", "admin") or self.is_owner(label, m) or label == m.reporter

    @precondition(lambda self: self.incidents)
    @rule(
        n=st.integers(0, 99),
        who=st.sampled_from(PEOPLE),
        whom=st.sampled_from(PEOPLE),
        remove=st.booleans(),
    )
    def change_participants(self, n: int, who: str, whom: str, remove: bool) -> None:
        m = self.pick(n, self.incidents)
        if remove and m.participants and n % 2:
            whom = self.pick(n // 2, sorted(m.participants))  # mostly someone who is on it
        before = self.current(m)
        url = f"/api/v1/incidents/{m.id}/participants"
        if remove:
            response = self.api.call("DELETE", f"{url}/{self.people[whom].id}", self.people[who])
        else:
            response = self.api.call(
                "POST", url, self.people[who], json={"user_id": str(self.people[whom].id)}
            )
        if not self.may_name(who, m):
            self.expect(response, 403)
        elif remove and whom not in m.participants:
            self.expect(response, 404)
        elif not remove and m.status in TERMINAL:
            self.expect(response, 409)
        else:
            # Removal is allowed on ended incidents too: narrowing who sees is always safe.
            assert response.status_code == (204 if remove else 200), response.text
            changed = (whom in m.participants) == remove
            if remove:
                m.participants.discard(whom)
            else:
                m.participants.add(whom)
            after = self.verify(m)
            assert after.incident["version"] == before.incident["version"] + changed
            assert len(after.timeline) == len(before.timeline) + changed
            if changed:
                event = after.timeline[-1]
                kind = "removed" if remove else "added"
                assert event["type"] == f"incident.participant_{kind}"
                assert event["data"]["user_id"] == str(self.people[whom].id)
            return
        self.assert_unchanged(before, m, response)

    # --- sign-off --------------------------------------------------------------------------

    def sign(self, m: IncidentModel, who: str) -> None:
        before = self.current(m)
        response = self.api.call(
            "POST", f"/api/v1/incidents/{m.id}/signoffs", self.people[who], json={}
        )
        if not self.may_sign_off(who, m):
            self.expect(response, 403)
        elif m.status != "resolved" or ministry_of(who) in m.signoffs:
            self.expect(response, 409)
        else:
            self.expect(response, 201)
            m.signoffs.add(ministry_of(who))
            after = self.verify(m)
            # A sign-off changes what closing needs: a new version, a new ETag.
            assert after.incident["version"] == before.incident["version"] + 1
            assert response.headers["etag"] == after.etag
            assert len(after.timeline) == len(before.timeline) + 1
            assert after.timeline[-1]["type"] == "incident.signed_off"
            assert after.incident["status"] == "resolved"
            return
        self.assert_unchanged(before, m, response)

    @precondition(lambda self: self.incidents)
    @rule(n=st.integers(0, 99), who=st.sampled_from(PEOPLE))
    def sign_off(self, n: int, who: str) -> None:
        self.sign(self.pick(n, self.incidents), who)

    @invariant()
    def statuses_are_states_of_the_table(self) -> None:
        for m in self.incidents:
            assert m.status in INCIDENT_LIFECYCLE.states
            if m.status in TERMINAL:
                assert m.status in INCIDENT_LIFECYCLE.terminal


def test_spec_edges_are_the_table() -> None:
    table = {(e.source, e.target) for e in INCIDENT_LIFECYCLE.edges}
    assert table == SPEC_EDGES
    assert set(INCIDENT_LIFECYCLE.states) == set(STATUSES)
    assert INCIDENT_LIFECYCLE.terminal == TERMINAL


def test_incident_lifecycle_machine(database_url: str) -> None:
    run_machine(IncidentLifecycleMachine, database_url)
