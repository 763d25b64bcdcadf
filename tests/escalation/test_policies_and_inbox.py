"""Escalation policies through the API, who escalations reach (TLP, active users), and the
notifications inbox (SPEC §4, §6)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from app.db import Database
from app.escalation.models import EscalationPolicyChange
from app.escalation.sweep import sweep
from tests.conftest import Actor, MakeActor, assert_problem
from tests.escalation.helpers import (
    DAY,
    HOUR,
    SECOND,
    T0,
    Clock,
    Team,
    action_state,
    approved_action,
    consistent_trail,
    keys,
    open_incident,
    reported,
)

POLICIES = "/api/v1/escalation-policies"
INBOX = "/api/v1/me/notifications"
SPEC_DEFAULTS = {
    "SEV1": ("PT1H", "PT2H", "PT6H", "PT12H"),
    "SEV2": ("PT4H", "PT8H", "P1D", "P1D"),
    "SEV3": ("P1D", "P2D", "P5D", "P3D"),
    "SEV4": ("P3D", "P5D", "P10D", "P7D"),
}
FIELDS = ("triage_within", "level2_after", "level3_after", "update_every")


def policy(*values: Any) -> dict[str, Any]:
    return dict(zip(FIELDS, values, strict=True))


# --- policies ------------------------------------------------------------------------------------


async def test_policies_list_the_spec_defaults_as_iso_durations(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    viewer = await make_actor("viewer", "METI")
    response = await client.get(POLICIES, headers=viewer.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    assert [p["severity"] for p in body["items"]] == ["SEV1", "SEV2", "SEV3", "SEV4"]
    for item in body["items"]:
        assert {k: item[k] for k in FIELDS} == policy(*SPEC_DEFAULTS[item["severity"]])
        assert item["updated_at"] is None
    assert_problem(await client.get(POLICIES), 401)


async def test_an_admin_changes_a_policy_it_is_recorded_and_the_sweep_uses_it(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    admin = team.admin
    new = policy("PT2H", 3600, "PT3H", "P2D")  # seconds are accepted too
    response = await client.put(f"{POLICIES}/SEV2", json=new, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in FIELDS} == policy("PT2H", "PT1H", "PT3H", "P2D")
    assert body["severity"] == "SEV2" and body["updated_at"] is not None
    listed = {
        p["severity"]: p
        for p in (await client.get(POLICIES, headers=admin.headers)).json()["items"]
    }
    assert listed["SEV2"]["level2_after"] == "PT1H"
    assert {k: listed["SEV1"][k] for k in FIELDS} == policy(*SPEC_DEFAULTS["SEV1"])

    async with db.unit_of_work(readonly=True) as session:
        changes = (await session.scalars(select(EscalationPolicyChange))).all()
    assert len(changes) == 1
    change = changes[0]
    assert (change.severity, change.changed_by_id, change.at) == ("SEV2", admin.id, T0)
    assert change.before == {
        "triage_within": 4 * 3600,
        "level2_after": 8 * 3600,
        "level3_after": 24 * 3600,
        "update_every": 24 * 3600,
    }
    assert change.after == {
        "triage_within": 2 * 3600,
        "level2_after": 3600,
        "level3_after": 3 * 3600,
        "update_every": 2 * 86400,
    }

    # The sweep follows the new durations: level 2 one hour after due, level 3 after three.
    incident = await open_incident(client, team)
    due = T0 + DAY
    action = await approved_action(client, team, incident, due_at=due)
    assert keys(await sweep(db, due + HOUR - SECOND)) == [("action", action["id"], 1)]
    assert keys(await sweep(db, due + HOUR)) == [("action", action["id"], 2)]
    assert keys(await sweep(db, due + 3 * HOUR)) == [("action", action["id"], 3)]
    reported_late = await open_incident(client, team, status="reported")
    assert keys(await sweep(db, T0 + 2 * HOUR)) == [("triage", reported_late["id"], 1)]

    # A second change is recorded as well, in order.
    frozen.set(T0 + HOUR)
    again = await client.put(
        f"{POLICIES}/SEV2", json=policy("PT4H", "PT8H", "P1D", "P1D"), headers=admin.headers
    )
    assert again.status_code == 200, again.text
    async with db.unit_of_work(readonly=True) as session:
        changes = (
            await session.scalars(
                select(EscalationPolicyChange).order_by(EscalationPolicyChange.at)
            )
        ).all()
    assert [c.at for c in changes] == [T0, T0 + HOUR]
    assert changes[1].before == changes[0].after


async def test_only_admins_change_policies_and_bad_values_name_the_field(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    valid = policy("PT1H", "PT2H", "PT6H", "PT12H")
    for actor in (team.doe_lead, team.reporter, team.doe_chair):
        assert_problem(await client.put(f"{POLICIES}/SEV1", json=valid, headers=actor.headers), 403)
    assert_problem(await client.put(f"{POLICIES}/SEV1", json=valid), 401)

    admin = team.admin.headers
    cases: list[tuple[dict[str, Any], str]] = [
        (policy("PT0S", "PT2H", "PT6H", "PT12H"), "triage_within"),
        (policy("PT1H", "-PT2H", "PT6H", "PT12H"), "level2_after"),
        (policy("PT1H", "PT2H", "PT6H", 0), "update_every"),
        (policy("PT1H", "PT2H", "PT2H", "PT12H"), "level3_after"),  # equal
        (policy("PT1H", "PT6H", "PT2H", "PT12H"), "level3_after"),  # earlier
        (policy("PT1H", "soon", "PT6H", "PT12H"), "level2_after"),
        ({k: v for k, v in valid.items() if k != "update_every"}, "update_every"),
    ]
    for body, field in cases:
        problem = assert_problem(
            await client.put(f"{POLICIES}/SEV1", json=body, headers=admin), 422
        )
        assert field in [e["field"] for e in problem["errors"]], (body, problem)
    unknown = assert_problem(await client.put(f"{POLICIES}/SEV5", json=valid, headers=admin), 422)
    assert "severity" in [e["field"] for e in unknown["errors"]]

    async with db.unit_of_work(readonly=True) as session:
        assert (await session.scalars(select(EscalationPolicyChange))).all() == []
    listed = (await client.get(POLICIES, headers=admin)).json()["items"]
    for item in listed:
        assert {k: item[k] for k in FIELDS} == policy(*SPEC_DEFAULTS[item["severity"]])


# --- recipients: TLP and active users ------------------------------------------------------------


async def test_escalations_reach_only_people_who_may_see_the_incident(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team, make_actor: MakeActor
):
    named_lead = await make_actor("lead", "DOE")  # reports (so is named on) the RED incident
    red = await open_incident(
        client, team, tlp="RED", reporter=named_lead, triager=named_lead, title="Tb licence"
    )
    # A co-chair, and the assignee (who must see the incident to be given its action).
    for participant in (team.doe_chair, team.assignee):
        added = await client.post(
            f"/api/v1/incidents/{red['id']}/participants",
            json={"user_id": str(participant.id)},
            headers=named_lead.headers,
        )
        assert added.status_code == 200, added.text
    due = T0 + DAY
    action = await approved_action(client, team, red, due_at=due, approvers=[named_lead])
    aid = action["id"]

    report = await sweep(db, due + DAY)
    mail = {a.user.email for a in (team.assignee, team.doe_owner, team.meti_owner)}
    assert reported(report) == [
        ("action", aid, 1, frozenset(mail)),
        # The DOE leads are named_lead and doe_lead; only the named one may see it.
        ("action", aid, 2, frozenset({named_lead.user.email})),
        # Of the co-chairs, only the added participant may see it.
        ("action", aid, 3, frozenset({team.doe_chair.user.email})),
    ]
    found = await consistent_trail(db)
    assert found.notified(aid, 2) == {named_lead.id}
    assert found.notified(aid, 3) == {team.doe_chair.id}
    assert [e.data["recipients"] for e in found.events][1:] == [
        [str(named_lead.id)],
        [str(team.doe_chair.id)],
    ]

    frozen.set(due + DAY)
    for actor, count in ((team.doe_lead, 0), (team.meti_chair, 0), (named_lead, 1)):
        inbox = await client.get(INBOX, headers=actor.headers)
        assert inbox.status_code == 200, inbox.text
        assert len(inbox.json()["items"]) == count, actor.user.email


async def test_deactivated_users_get_no_notifications(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team, make_actor: MakeActor
):
    incident = await open_incident(client, team)
    due = T0 + DAY
    action = await approved_action(client, team, incident, due_at=due)
    meti_admin = await make_actor("admin", "METI")  # an admin manages their own ministry
    for user in (team.meti_owner, team.meti_chair):
        response = await client.patch(
            f"/api/v1/users/{user.id}", json={"active": False}, headers=meti_admin.headers
        )
        assert response.status_code == 200, response.text
    report = await sweep(db, due + DAY)
    assert reported(report) == [
        (
            "action",
            action["id"],
            1,
            frozenset({team.assignee.user.email, team.doe_owner.user.email}),
        ),
        ("action", action["id"], 2, frozenset({team.doe_lead.user.email})),
        ("action", action["id"], 3, frozenset({team.doe_chair.user.email})),
    ]
    found = await consistent_trail(db)
    notified = {n.user_id for n in found.notifications}
    assert team.meti_owner.id not in notified and team.meti_chair.id not in notified
    assert await action_state(db, action["id"]) == (3, 0)


# --- the inbox -----------------------------------------------------------------------------------


async def inbox(client: httpx.AsyncClient, actor: Actor, **params: Any) -> dict[str, Any]:
    response = await client.get(INBOX, params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def every_page(client: httpx.AsyncClient, actor: Actor, limit: int) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await inbox(client, actor, **params)
        assert len(page["items"]) <= limit
        ids += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("the cursor never ran out")


async def test_inbox_unread_first_pagination_and_marking_read(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    incident = await open_incident(client, team)
    assignee = team.assignee
    dues = [T0 + DAY + n * HOUR for n in range(5)]
    for n, due in enumerate(dues):
        await approved_action(client, team, incident, due_at=due, title=f"Action {n + 1}")
    for due in dues:  # one level-1 notification each, at a distinct time
        assert len((await sweep(db, due)).escalations) == 1
    frozen.set(dues[-1] + HOUR)

    first = await inbox(client, assignee)
    newest_first = [n["id"] for n in first["items"]]
    assert [n["created_at"] for n in first["items"]] == sorted(
        (n["created_at"] for n in first["items"]), reverse=True
    )
    assert len(newest_first) == 5 and first["next_cursor"] is None
    assert all(n["read_at"] is None and n["type"] == "action.escalated" for n in first["items"])
    assert [n["data"]["level"] for n in first["items"]] == [1] * 5
    n5, n4, n3, n2, n1 = newest_first

    # Read n4 and n1: unread first (newest first), then read (newest first).
    for note in (n4, n1):
        marked = await client.post(f"{INBOX}/{note}/read", headers=assignee.headers)
        assert marked.status_code == 200, marked.text
        assert marked.json()["read_at"] is not None
    frozen.advance(HOUR)
    again = await client.post(f"{INBOX}/{n4}/read", headers=assignee.headers)
    assert again.status_code == 200 and again.json()["read_at"] == marked.json()["read_at"]
    expected = [n5, n3, n2, n4, n1]
    assert [n["id"] for n in (await inbox(client, assignee))["items"]] == expected
    for limit in (1, 2, 3, 4, 5):
        assert await every_page(client, assignee, limit) == expected, limit
    unread = await inbox(client, assignee, unread="true")
    assert [n["id"] for n in unread["items"]] == [n5, n3, n2]
    assert_problem(
        await client.get(INBOX, params={"cursor": "garbage"}, headers=assignee.headers), 422
    )

    # Someone else's notification is not there for them.
    owner = team.doe_owner
    assert len((await inbox(client, owner))["items"]) == 5
    assert_problem(await client.post(f"{INBOX}/{n5}/read", headers=owner.headers), 404)
    assert_problem(
        await client.post(
            f"{INBOX}/00000000-0000-4000-8000-000000000000/read", headers=owner.headers
        ),
        404,
    )
    assert [n["id"] for n in (await inbox(client, assignee, unread="true"))["items"]] == [
        n5,
        n3,
        n2,
    ]

    # Read all: only the caller's.
    read_all = await client.post(f"{INBOX}/read-all", headers=assignee.headers)
    assert read_all.status_code == 200 and read_all.json() == {"marked_read": 3}
    assert (await inbox(client, assignee, unread="true"))["items"] == []
    assert [n["id"] for n in (await inbox(client, assignee))["items"]] == [n5, n4, n3, n2, n1]
    assert len((await inbox(client, owner, unread="true"))["items"]) == 5
    again_all = await client.post(f"{INBOX}/read-all", headers=assignee.headers)
    assert again_all.json() == {"marked_read": 0}
