"""Response actions through the API (SPEC §3, §6, §8): the lifecycle, JOINT approvals,
the incident guards that depend on actions, refusals (which change nothing) and visibility."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from app import clock
from app.actions.models import Action
from app.db import Database
from tests.actions.helpers import (
    Json,
    act,
    approve,
    current,
    drive,
    events,
    fetch,
    in_days,
    patch,
    proposal,
    propose,
    state,
    triaged_room,
)
from tests.conftest import MakeActor, assert_problem
from tests.incidents.helpers import assign, create, move


def codes(problem: Json) -> list[str]:
    return [u["code"] for u in problem["unmet"]]


def fields(problem: Json) -> list[str]:
    return [e["field"] for e in problem["errors"]]


async def test_happy_path_with_timeline_and_etags(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor)
    worker, lead = room.doe_responder, room.doe_lead
    due = in_days(3)
    action = await propose(client, worker, room.incident, assignee_id=str(worker.id), due_at=due)
    assert action["status"] == "proposed" and action["version"] == 1
    assert action["incident_id"] == room.incident["id"]
    assert action["incident_key"] == room.incident["key"]
    assert action["assignee"]["id"] == action["created_by"]["id"] == str(worker.id)
    assert action["approvals"] == [] and action["approvals_required"] == ["DOE"]
    assert action["overdue"] is False and action["escalation_level"] == 0
    listed = await client.get(
        f"/api/v1/incidents/{room.incident['key']}/actions", headers=lead.headers
    )
    assert [a["id"] for a in listed.json()["items"]] == [action["id"]]
    url = f"/api/v1/actions/{action['id']}"

    # PATCH: If-Match missing → 428, stale → 412; neither changes anything.
    before = await state(client, worker, room.incident)
    assert_problem(await client.patch(url, json={"priority": "low"}, headers=worker.headers), 428)
    stale = {**worker.headers, "If-Match": '"7"'}
    assert_problem(await client.patch(url, json={"priority": "low"}, headers=stale), 412)
    assert await state(client, worker, room.incident) == before
    patched = await client.patch(
        url, json={"priority": "medium"}, headers={**worker.headers, "If-Match": '"1"'}
    )
    assert patched.status_code == 200, patched.text
    assert patched.headers["etag"] == '"2"' and patched.json()["priority"] == "medium"
    again = await client.patch(
        url, json={"priority": "low"}, headers={**worker.headers, "If-Match": '"1"'}
    )
    assert_problem(again, 412)

    # Approval by the DOE lead: one approval suffices; a stale If-Match is refused.
    assert_problem(
        await client.post(f"{url}/approvals", headers={**lead.headers, "If-Match": '"1"'}), 412
    )
    approved = await client.post(f"{url}/approvals", headers={**lead.headers, "If-Match": '"2"'})
    assert approved.status_code == 201, approved.text
    body = approved.json()
    assert body["status"] == "approved" and body["approved_at"]
    assert [(a["ministry"], a["user"]["id"]) for a in body["approvals"]] == [("DOE", str(lead.id))]
    assert approved.headers["etag"] == f'"{body["version"]}"' and body["version"] > 2

    # Transitions: If-Match missing → 428, stale → 412, then the assignee works it.
    start = {"to": "in_progress"}
    assert_problem(await client.post(f"{url}/transitions", json=start, headers=worker.headers), 428)
    assert_problem(
        await client.post(
            f"{url}/transitions", json=start, headers={**worker.headers, "If-Match": '"2"'}
        ),
        412,
    )
    assert (await current(client, worker, action))["status"] == "approved"
    started = await client.post(
        f"{url}/transitions",
        json=start,
        headers={**worker.headers, "If-Match": approved.headers["etag"]},
    )
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "in_progress"
    assert started.headers["etag"] == f'"{started.json()["version"]}"' != approved.headers["etag"]
    blocked = await act(client, worker, action, "blocked", reason="Awaiting the export licence")
    assert blocked.status_code == 200, blocked.text
    assert blocked.json()["blocked_reason"] == "Awaiting the export licence"
    resumed = await act(client, worker, action, "in_progress")
    assert resumed.status_code == 200 and resumed.json()["blocked_reason"] is None
    outcome = "20 t released to Japanese and US fabs."
    done = await act(client, worker, action, "completed", outcome=outcome)
    assert done.status_code == 200, done.text
    final = done.json()
    assert final["status"] == "completed" and final["outcome"] == outcome
    assert final["completed_at"] and final["overdue"] is False
    # Terminal: nothing moves a completed action.
    assert codes(assert_problem(await act(client, lead, action, "in_progress"), 409)) == [
        "no_such_transition"
    ]

    timeline = await events(client, worker, room.incident)
    assert [(e["type"], e["data"].get("from"), e["data"].get("to")) for e in timeline] == [
        ("action.created", None, None),
        ("action.updated", None, None),
        ("action.approved", None, None),
        ("action.status_changed", "proposed", "approved"),
        ("action.status_changed", "approved", "in_progress"),
        ("action.status_changed", "in_progress", "blocked"),
        ("action.status_changed", "blocked", "in_progress"),
        ("action.status_changed", "in_progress", "completed"),
    ]
    assert {e["data"]["action_id"] for e in timeline} == {action["id"]}
    assert timeline[0]["data"]["title"] == action["title"]
    assert timeline[1]["data"]["before"] == {"priority": "high"}
    assert timeline[1]["data"]["after"] == {"priority": "medium"}
    assert timeline[2]["data"]["ministry"] == "DOE"
    assert [e["actor"]["user"]["id"] for e in timeline] == [str(worker.id)] * 2 + [
        str(lead.id)
    ] * 2 + [str(worker.id)] * 4
    assert timeline[5]["data"]["note"] == "Awaiting the export licence"
    assert timeline[7]["data"]["note"] == outcome


async def test_joint_action_needs_both_co_leads(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor)
    action = await propose(
        client,
        room.meti_responder,
        room.incident,
        owning_ministry="JOINT",
        kind="joint_procurement",
        assignee_id=str(room.meti_responder.id),
        due_at=in_days(5),
    )
    assert action["approvals_required"] == ["DOE", "METI"]
    first = await approve(client, room.doe_lead, action)
    assert first.status_code == 201, first.text
    half = first.json()
    assert half["status"] == "proposed" and half["approved_at"] is None
    assert half["approvals_required"] == ["DOE", "METI"]
    assert [(a["ministry"], a["user"]["id"]) for a in half["approvals"]] == [
        ("DOE", str(room.doe_lead.id))
    ]
    assert (await current(client, room.meti_lead, action))["approvals"] == half["approvals"]

    # DOE approving again — the same lead, another DOE lead, or through /transitions — is 409.
    before = await state(client, room.doe_lead, room.incident)
    other_doe_lead = await make_actor("lead", "DOE")
    assert_problem(await approve(client, room.doe_lead, action), 409)
    assert_problem(await approve(client, other_doe_lead, action), 409)
    assert_problem(await act(client, other_doe_lead, action, "approved"), 409)
    # A METI responder is not a lead: 403.
    assert_problem(await approve(client, room.meti_responder, action), 403)
    assert await state(client, room.doe_lead, room.incident) == before

    second = await approve(client, room.meti_lead, action)
    assert second.status_code == 201, second.text
    full = second.json()
    assert full["status"] == "approved" and full["approved_at"]
    assert [(a["ministry"], a["user"]["id"]) for a in full["approvals"]] == [
        ("DOE", str(room.doe_lead.id)),
        ("METI", str(room.meti_lead.id)),
    ]
    assert_problem(await approve(client, other_doe_lead, action), 409)
    timeline = await events(client, room.meti_lead, room.incident)
    assert [(e["type"], e["data"].get("ministry"), e["data"].get("to")) for e in timeline] == [
        ("action.created", None, None),
        ("action.approved", "DOE", None),
        ("action.approved", "METI", None),
        ("action.status_changed", None, "approved"),
    ]


async def test_incident_guards_that_depend_on_actions(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor)
    incident, lead = room.incident, room.doe_lead
    refused = assert_problem(await move(client, lead, incident, "responding"), 409)
    assert codes(refused) == ["live_action_required"]

    # A rejected action is not live.
    dud = await propose(client, room.doe_responder, incident)
    rejected = await act(client, lead, dud, "rejected", reason="Stockpile already committed")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["closing_reason"] == "Stockpile already committed"
    refused = assert_problem(await move(client, lead, incident, "responding"), 409)
    assert codes(refused) == ["live_action_required"]

    live = await propose(
        client,
        room.doe_responder,
        incident,
        assignee_id=str(room.doe_responder.id),
        due_at=in_days(2),
    )
    responding = await move(client, lead, incident, "responding")
    assert responding.status_code == 200, responding.text
    assert responding.json()["status"] == "responding"

    spare = await propose(client, room.meti_responder, incident, owning_ministry="METI")
    resolve = {"resolution_summary": "Supply restored through the stockpile release."}
    refused = assert_problem(await move(client, lead, incident, "resolved", **resolve), 409)
    assert "open_actions" in codes(refused)
    await drive(client, room, live, "completed")
    refused = assert_problem(await move(client, lead, incident, "resolved", **resolve), 409)
    assert codes(refused) == ["open_actions"]
    cancelled = await act(client, room.meti_lead, spare, "cancelled", reason="Not needed")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    resolved = await move(client, lead, incident, "resolved", **resolve)
    assert resolved.status_code == 200, resolved.text

    # A closed incident takes no new actions.
    for signer in (room.doe_lead, room.meti_lead):
        signed = await client.post(
            f"/api/v1/incidents/{incident['id']}/signoffs", json={}, headers=signer.headers
        )
        assert signed.status_code == 201, signed.text
    closed = await move(client, lead, incident, "closed")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    before = await state(client, lead, incident)
    late = await client.post(
        f"/api/v1/incidents/{incident['id']}/actions", json=proposal(), headers=lead.headers
    )
    assert_problem(late, 409)
    assert await state(client, lead, incident) == before


async def test_no_actions_on_a_rejected_incident(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor, status="reported")
    early = await propose(client, room.reporter, room.incident, owning_ministry="DOE")
    rejected = await move(client, room.doe_lead, room.incident, "rejected", reason="False alarm")
    assert rejected.status_code == 200, rejected.text
    before = await state(client, room.doe_lead, room.incident)
    late = await client.post(
        f"/api/v1/incidents/{room.incident['id']}/actions",
        json=proposal(),
        headers=room.doe_lead.headers,
    )
    assert_problem(late, 409)
    # Its existing actions are frozen too.
    assert_problem(await approve(client, room.doe_lead, early), 409)
    assert_problem(await act(client, room.doe_lead, early, "cancelled", reason="moot"), 409)
    assert_problem(await patch(client, room.doe_lead, early, {"title": "Renamed"}), 409)
    assert await state(client, room.doe_lead, room.incident) == before


async def test_assignee_must_belong_to_the_owning_ministry(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor)
    url = f"/api/v1/incidents/{room.incident['id']}/actions"
    before = await state(client, room.doe_lead, room.incident)
    for ministry, assignee in [
        ("DOE", room.meti_responder.id),
        ("METI", room.doe_responder.id),
        ("DOE", "00000000-0000-4000-8000-000000000000"),
    ]:
        body = proposal(owning_ministry=ministry, assignee_id=str(assignee))
        refused = assert_problem(
            await client.post(url, json=body, headers=room.doe_lead.headers), 422
        )
        assert fields(refused) == ["assignee_id"], refused
    assert await state(client, room.doe_lead, room.incident) == before

    # JOINT: either co-lead ministry is fine.
    for worker in (room.doe_responder, room.meti_responder):
        joint = await propose(
            client,
            room.doe_lead,
            room.incident,
            owning_ministry="JOINT",
            assignee_id=str(worker.id),
        )
        assert joint["assignee"]["id"] == str(worker.id)

    # The same rule on PATCH: a new assignee, or a new owning ministry the assignee is not in.
    meti = await propose(
        client,
        room.meti_lead,
        room.incident,
        owning_ministry="METI",
        assignee_id=str(room.meti_responder.id),
    )
    before = await state(client, room.meti_lead, room.incident)
    for changes in ({"assignee_id": str(room.doe_responder.id)}, {"owning_ministry": "DOE"}):
        refused = assert_problem(await patch(client, room.meti_lead, meti, changes), 422)
        assert fields(refused) == ["assignee_id"], refused
    assert await state(client, room.meti_lead, room.incident) == before


async def test_who_may_approve_and_work_an_action(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor)
    worker = room.doe_responder
    colleague = await make_actor("responder", "DOE")
    action = await propose(
        client, worker, room.incident, assignee_id=str(worker.id), due_at=in_days(4)
    )
    before = await state(client, room.doe_lead, room.incident)
    # A METI lead may not approve a DOE action (either way in).
    assert_problem(await approve(client, room.meti_lead, action), 403)
    assert_problem(await act(client, room.meti_lead, action, "approved"), 403)
    # Nor may the proposer, a responder.
    assert_problem(await approve(client, worker, action), 403)
    assert await state(client, room.doe_lead, room.incident) == before

    await drive(client, room, action, "in_progress")
    before = await state(client, room.doe_lead, room.incident)
    for actor, to, extra in [
        (colleague, "completed", {"outcome": "Done by someone else"}),
        (colleague, "blocked", {"reason": "Not mine"}),
        (colleague, "cancelled", {"reason": "Not mine"}),
        (room.meti_lead, "completed", {"outcome": "Not our action"}),
    ]:
        assert_problem(await act(client, actor, action, to, **extra), 403)
    assert await state(client, room.doe_lead, room.incident) == before
    # The incident's METI owner may cancel any of its actions.
    cancelled = await act(client, room.meti_lead, action, "cancelled", reason="Superseded")
    assert cancelled.status_code == 200 and cancelled.json()["closing_reason"] == "Superseded"


async def test_guards_refuse_with_unmet_and_change_nothing(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor)
    worker, lead = room.doe_responder, room.doe_lead
    bare = await propose(client, worker, room.incident)
    undated = await propose(client, worker, room.incident, assignee_id=str(worker.id))
    working = await propose(
        client, worker, room.incident, assignee_id=str(worker.id), due_at=in_days(3)
    )
    await drive(client, room, working, "in_progress")
    before = await state(client, lead, room.incident)

    assert codes(assert_problem(await approve(client, lead, undated), 409)) == ["due_at_required"]
    assert sorted(codes(assert_problem(await act(client, lead, bare, "approved"), 409))) == [
        "assignee_required",
        "due_at_required",
    ]
    for outcome in ({}, {"outcome": "   "}):
        refused = assert_problem(await act(client, worker, working, "completed", **outcome), 409)
        assert codes(refused) == ["outcome_required"]
    refused = assert_problem(await act(client, worker, working, "blocked"), 409)
    assert codes(refused) == ["reason_required"]
    refused = assert_problem(await act(client, lead, bare, "rejected", reason=""), 409)
    assert codes(refused) == ["reason_required"]
    refused = assert_problem(await act(client, worker, working, "approved"), 409)
    assert codes(refused) == ["not_proposed"]
    refused = assert_problem(await act(client, lead, bare, "in_progress"), 409)
    assert codes(refused) == ["no_such_transition"]
    assert await state(client, lead, room.incident) == before


async def test_due_at_in_the_past_at_approval(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor)
    worker, lead = room.doe_responder, room.doe_lead
    action = await propose(
        client, worker, room.incident, assignee_id=str(worker.id), due_at=in_days(1)
    )
    later = clock.now() + timedelta(days=2)
    clock.set_source(lambda: later)
    assert (await current(client, lead, action))["overdue"] is True
    before = await state(client, lead, room.incident)
    assert fields(assert_problem(await approve(client, lead, action), 422)) == ["due_at"]
    assert fields(assert_problem(await act(client, lead, action, "approved"), 422)) == ["due_at"]
    assert await state(client, lead, room.incident) == before
    # Moving the due time into the future makes the action approvable.
    moved = await patch(client, worker, action, {"due_at": in_days(1)})
    assert moved.status_code == 200, moved.text
    assert moved.json()["overdue"] is False
    approved = await approve(client, lead, action)
    assert approved.status_code == 201 and approved.json()["status"] == "approved"
    # Once approved, the due time may only move forward.
    refused = assert_problem(await patch(client, lead, action, {"due_at": in_days(-1)}), 422)
    assert fields(refused) == ["due_at"]


async def test_unknown_and_invalid_fields_are_422(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor)
    lead = room.doe_lead
    action = await propose(client, lead, room.incident)
    url = f"/api/v1/actions/{action['id']}"
    before = await state(client, lead, room.incident)
    if_match = {**lead.headers, "If-Match": '"1"'}
    for method, path, body, field in [
        ("POST", f"/api/v1/incidents/{room.incident['id']}/actions", proposal(bogus=1), "bogus"),
        ("POST", f"/api/v1/incidents/{room.incident['id']}/actions", proposal(kind="x"), "kind"),
        ("POST", f"/api/v1/incidents/{room.incident['id']}/actions", proposal(title=" "), "title"),
        (
            "POST",
            f"/api/v1/incidents/{room.incident['id']}/actions",
            proposal(due_at="soon"),
            "due_at",
        ),
        ("PATCH", url, {"status": "completed"}, "status"),
        ("PATCH", url, {"priority": "urgent"}, "priority"),
        ("PATCH", url, {"title": None}, "title"),
        ("POST", f"{url}/transitions", {"to": "in_progress", "force": True}, "force"),
        ("POST", f"{url}/transitions", {"to": "done"}, "to"),
    ]:
        response = await client.request(method, path, json=body, headers=if_match)
        problem = assert_problem(response, 422)
        assert any(f == field or f.startswith(f"{field}.") for f in fields(problem)), problem
    assert await state(client, lead, room.incident) == before


async def test_visibility_of_actions_follows_the_incident(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder", "DOE")
    outsider = await make_actor("lead", "DOE")
    helper = await make_actor("responder", "METI")
    red = await create(client, reporter, tlp="RED", title="Restricted: terbium refinery outage")
    action = await propose(client, reporter, red, due_at=in_days(2))
    url = f"/api/v1/actions/{action['id']}"
    before = await state(client, reporter, red)

    async def hidden_from(actor_headers: dict[str, str]) -> None:
        stamped = {**actor_headers, "If-Match": '"1"'}
        assert_problem(await client.get(url, headers=actor_headers), 404)
        assert_problem(await client.patch(url, json={"title": "x"}, headers=stamped), 404)
        assert_problem(
            await client.post(f"{url}/transitions", json={"to": "cancelled"}, headers=stamped),
            404,
        )
        assert_problem(await client.post(f"{url}/approvals", headers=stamped), 404)
        incident_actions = f"/api/v1/incidents/{red['id']}/actions"
        assert_problem(await client.get(incident_actions, headers=actor_headers), 404)
        assert_problem(
            await client.post(incident_actions, json=proposal(), headers=actor_headers), 404
        )
        queue = await client.get("/api/v1/actions", headers=actor_headers)
        assert queue.status_code == 200 and queue.json()["items"] == []
        by_key = await client.get(
            "/api/v1/actions", params={"incident": red["key"]}, headers=actor_headers
        )
        assert_problem(by_key, 404)

    await hidden_from(outsider.headers)
    await hidden_from(helper.headers)
    assert await state(client, reporter, red) == before

    # Assigning the helper an action of the RED incident does not name them on it: refused.
    refused = await client.post(
        f"/api/v1/incidents/{red['id']}/actions",
        json=proposal(
            owning_ministry="JOINT",
            kind="information_sharing",
            assignee_id=str(helper.id),
            due_at=in_days(1),
        ),
        headers=reporter.headers,
    )
    assert fields(assert_problem(refused, 422)) == ["assignee_id"]
    assert_problem(await patch(client, reporter, action, {"assignee_id": str(helper.id)}), 422)
    await hidden_from(helper.headers)
    assert await state(client, reporter, red) == before

    # Named by the reporter, the helper sees the incident and may then be assigned work.
    named = await client.post(
        f"/api/v1/incidents/{red['id']}/participants",
        json={"user_id": str(helper.id)},
        headers=reporter.headers,
    )
    assert named.status_code == 200, named.text
    joint = await propose(
        client,
        reporter,
        red,
        owning_ministry="JOINT",
        kind="information_sharing",
        assignee_id=str(helper.id),
        due_at=in_days(1),
    )
    assert (await current(client, helper, joint))["assignee"]["id"] == str(helper.id)
    assert (await fetch(client, helper, action)).status_code == 200
    mine = await client.get("/api/v1/actions", params={"assignee": "me"}, headers=helper.headers)
    assert [a["id"] for a in mine.json()["items"]] == [joint["id"]]
    everything = await client.get("/api/v1/actions", headers=helper.headers)
    assert {a["id"] for a in everything.json()["items"]} == {action["id"], joint["id"]}
    # Still nobody else.
    await hidden_from(outsider.headers)


async def test_viewers_cannot_be_assigned_work(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor)
    viewer = await make_actor("viewer", "DOE")
    url = f"/api/v1/incidents/{room.incident['id']}/actions"
    before = await state(client, room.doe_lead, room.incident)
    body = proposal(owning_ministry="DOE", assignee_id=str(viewer.id))
    refused = assert_problem(await client.post(url, json=body, headers=room.doe_lead.headers), 422)
    assert fields(refused) == ["assignee_id"]
    assert "viewer" in refused["detail"]
    assert await state(client, room.doe_lead, room.incident) == before


# --- approvals mean what they approved -------------------------------------------------------


async def test_a_material_edit_voids_the_approvals_of_a_proposed_joint_action(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor)
    other_meti = await make_actor("responder", "METI")
    action = await propose(
        client,
        room.doe_lead,
        room.incident,
        owning_ministry="JOINT",
        kind="joint_procurement",
        assignee_id=str(room.meti_responder.id),
        due_at=in_days(5),
    )
    edits: list[Json] = [
        {"title": "Joint purchase of gallium"},
        {"description": "Split 60/40 between the two stockpiles."},
        {"kind": "financing"},
        {"assignee_id": str(other_meti.id)},
        {"due_at": in_days(6)},
        {"owning_ministry": "DOE", "assignee_id": str(room.doe_responder.id)},
    ]
    for n, edit in enumerate(edits):
        half = await approve(client, room.doe_lead, action)
        assert half.status_code == 201, half.text
        assert [a["ministry"] for a in half.json()["approvals"]] == ["DOE"]
        # Priority is not what was approved: the approval stands.
        kept = await patch(client, room.doe_lead, action, {"priority": ["low", "high"][n % 2]})
        assert kept.status_code == 200 and len(kept.json()["approvals"]) == 1, kept.text
        voided = await patch(client, room.doe_lead, action, edit)
        assert voided.status_code == 200, voided.text
        assert voided.json()["approvals"] == [] and voided.json()["status"] == "proposed"
        last = (await events(client, room.doe_lead, room.incident))[-2:]
        assert [e["type"] for e in last] == ["action.updated", "action.approvals_voided"]
        assert last[1]["data"]["ministries"] == ["DOE"]
        assert last[1]["data"]["fields"] == sorted(edit)
        assert last[1]["data"]["action_id"] == action["id"]
    # Re-homed to DOE by the last edit, it needs (and gets) DOE's approval afresh.
    approved = await approve(client, room.doe_lead, action)
    assert approved.status_code == 201 and approved.json()["status"] == "approved"
    assert approved.json()["title"] == "Joint purchase of gallium"


async def test_an_approved_action_keeps_a_due_date_and_an_assignee(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor)
    worker, lead = room.doe_responder, room.doe_lead
    colleague = await make_actor("responder", "DOE")
    action = await propose(
        client, worker, room.incident, assignee_id=str(worker.id), due_at=in_days(3)
    )
    # While proposed, either may be cleared.
    for cleared in ({"due_at": None}, {"assignee_id": None}):
        response = await patch(client, lead, action, cleared)
        assert response.status_code == 200, response.text
    restored = await patch(
        client, lead, action, {"due_at": in_days(3), "assignee_id": str(worker.id)}
    )
    assert restored.status_code == 200, restored.text
    for to in ("approved", "in_progress", "blocked"):
        if to == "approved":
            await drive(client, room, action, to)
        else:
            extra = {"reason": "Customs"} if to == "blocked" else {}
            moved = await act(client, lead, action, to, **extra)
            assert moved.status_code == 200, moved.text
        before = await state(client, lead, room.incident)
        for name in ("due_at", "assignee_id"):
            refused = assert_problem(await patch(client, lead, action, {name: None}), 422)
            assert fields(refused) == [name]
        assert await state(client, lead, room.incident) == before
    # Changing them is fine (the assignee must still be of the owning ministry and see it).
    changed = await patch(
        client, lead, action, {"due_at": in_days(9), "assignee_id": str(colleague.id)}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["assignee"]["id"] == str(colleague.id)


async def test_due_dates_set_must_be_in_the_future(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor)
    now = clock.now()
    clock.set_source(lambda: now)
    url = f"/api/v1/incidents/{room.incident['id']}/actions"
    before = await state(client, room.doe_lead, room.incident)
    for due in (now - timedelta(days=1), now - timedelta(seconds=1), now):
        body = proposal(due_at=due.isoformat())
        refused = await client.post(url, json=body, headers=room.doe_lead.headers)
        assert fields(assert_problem(refused, 422)) == ["due_at"]
    assert await state(client, room.doe_lead, room.incident) == before
    action = await propose(client, room.doe_lead, room.incident, due_at=in_days(1))
    assert action["due_at"]
    refused = assert_problem(
        await patch(
            client, room.doe_lead, action, {"due_at": (now - timedelta(hours=1)).isoformat()}
        ),
        422,
    )
    assert fields(refused) == ["due_at"]
    # Once the clock passes it, an unchanged due date may be sent back as it is.
    later = now + timedelta(days=2)
    clock.set_source(lambda: later)
    resent = await patch(
        client, room.doe_lead, action, {"due_at": action["due_at"], "priority": "low"}
    )
    assert resent.status_code == 200, resent.text
    assert resent.json()["overdue"] is True


# --- incidents and their actions ---------------------------------------------------------------


async def test_rejecting_an_incident_cancels_its_open_actions(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor, status="reported")
    lead, worker = room.doe_lead, room.doe_responder
    for ministry, owner in (("DOE", lead), ("METI", room.meti_lead)):
        assert (await assign(client, lead, room.incident, ministry, owner)).status_code == 200

    async def dated(title: str) -> Json:
        return await propose(
            client, lead, room.incident, title=title, assignee_id=str(worker.id), due_at=in_days(2)
        )

    proposed = await propose(client, worker, room.incident, title="Proposed")
    approved = await dated("Approved")
    await drive(client, room, approved, "approved")
    working = await dated("Working")
    await drive(client, room, working, "in_progress")
    blocked = await dated("Blocked")
    await drive(client, room, blocked, "blocked")
    done = await dated("Done")
    await drive(client, room, done, "completed")
    turned_down = await propose(client, worker, room.incident, title="Turned down")
    assert (await act(client, lead, turned_down, "rejected", reason="No")).status_code == 200
    open_ = [proposed, approved, working, blocked]
    versions = {a["id"]: (await current(client, lead, a))["version"] for a in open_}

    rejected = await move(client, lead, room.incident, "rejected", reason="A false alarm")
    assert rejected.status_code == 200, rejected.text
    for a in open_:
        body = await current(client, lead, a)
        assert body["status"] == "cancelled", body
        assert body["closing_reason"] == "The incident was rejected: A false alarm"
        assert body["version"] == versions[a["id"]] + 1
    assert (await current(client, lead, done))["status"] == "completed"
    assert (await current(client, lead, turned_down))["status"] == "rejected"
    timeline = await events(client, lead, room.incident, prefix="")
    tail = timeline[-5:]
    assert tail[0]["type"] == "incident.status_changed" and tail[0]["data"]["to"] == "rejected"
    assert [
        (e["type"], e["data"]["action_id"], e["data"]["from"], e["data"]["to"]) for e in tail[1:]
    ] == [
        ("action.status_changed", proposed["id"], "proposed", "cancelled"),
        ("action.status_changed", approved["id"], "approved", "cancelled"),
        ("action.status_changed", working["id"], "in_progress", "cancelled"),
        ("action.status_changed", blocked["id"], "blocked", "cancelled"),
    ]
    assert {e["actor"]["user"]["id"] for e in tail} == {str(lead.id)}
    # Nothing is overdue or open in anyone's queue any more.
    queue = await client.get("/api/v1/actions", params={"overdue": "true"}, headers=worker.headers)
    assert queue.json()["items"] == []


async def test_closing_needs_every_action_terminal(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    room = await triaged_room(client, make_actor)
    lead = room.doe_lead
    action = await propose(client, lead, room.incident, assignee_id=str(lead.id), due_at=in_days(1))
    assert (await move(client, lead, room.incident, "responding")).status_code == 200
    await drive(client, room, action, "completed")
    resolved = await move(
        client, lead, room.incident, "resolved", resolution_summary="Supply restored"
    )
    assert resolved.status_code == 200, resolved.text
    # An open action of a resolved incident cannot be made through the API (none may be
    # proposed once resolved); one written straight to the database stands in for it.
    async with db.unit_of_work() as session:
        session.add(
            Action(
                incident_id=uuid.UUID(room.incident["id"]),
                title="Left open",
                kind="other",
                owning_ministry="DOE",
                status="approved",
                created_by_id=lead.id,
            )
        )
    refused = assert_problem(await move(client, lead, room.incident, "closed"), 409)
    assert sorted(codes(refused)) == [
        "doe_signoff_required",
        "meti_signoff_required",
        "open_actions",
    ]
    for signer in (room.doe_lead, room.meti_lead):
        signed = await client.post(
            f"/api/v1/incidents/{room.incident['id']}/signoffs", json={}, headers=signer.headers
        )
        assert signed.status_code == 201, signed.text
    refused = assert_problem(await move(client, lead, room.incident, "closed"), 409)
    assert codes(refused) == ["open_actions"]


async def test_actions_are_proposed_only_while_reported_to_monitoring(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    room = await triaged_room(client, make_actor, status="reported")
    lead, incident = room.doe_lead, room.incident
    url = f"/api/v1/incidents/{incident['id']}/actions"

    async def try_propose(expected: str | None) -> None:
        before = await state(client, lead, incident)
        response = await client.post(url, json=proposal(), headers=lead.headers)
        if expected is None:
            assert response.status_code == 201, response.text
            return
        assert codes(assert_problem(response, 409)) == [expected]
        assert await state(client, lead, incident) == before

    watched = await create(client, room.reporter, status="watch", title="Watch only")
    watched_url = f"/api/v1/incidents/{watched['id']}/actions"
    refused = await client.post(watched_url, json=proposal(), headers=lead.headers)
    assert codes(assert_problem(refused, 409)) == ["incident_not_taking_actions"]

    await try_propose(None)  # reported
    for ministry, owner in (("DOE", lead), ("METI", room.meti_lead)):
        assert (await assign(client, lead, incident, ministry, owner)).status_code == 200
    patched = await client.patch(
        f"/api/v1/incidents/{incident['id']}",
        json={"severity": "SEV3"},
        headers={**lead.headers, "If-Match": await _etag(client, lead, incident)},
    )
    assert patched.status_code == 200, patched.text
    assert (await move(client, lead, incident, "triaged")).status_code == 200
    await try_propose(None)
    assert (await move(client, lead, incident, "responding")).status_code == 200
    await try_propose(None)
    assert (await move(client, lead, incident, "monitoring")).status_code == 200
    await try_propose(None)
    listed = await client.get(url, headers=lead.headers)
    for a in listed.json()["items"]:
        assert (await act(client, lead, a, "cancelled", reason="Not needed")).status_code == 200
    resolve = {"resolution_summary": "Market recovered"}
    assert (await move(client, lead, incident, "resolved", **resolve)).status_code == 200
    await try_propose("incident_not_taking_actions")
    for signer in (room.doe_lead, room.meti_lead):
        signed = await client.post(
            f"/api/v1/incidents/{incident['id']}/signoffs", json={}, headers=signer.headers
        )
        assert signed.status_code == 201, signed.text
    assert (await move(client, lead, incident, "closed")).status_code == 200
    await try_propose("incident_closed")


async def _etag(client: httpx.AsyncClient, actor: Any, incident: Json) -> str:
    response = await client.get(f"/api/v1/incidents/{incident['id']}", headers=actor.headers)
    return response.headers["etag"]
