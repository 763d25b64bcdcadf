"""Who is named on an incident, and why that cannot be widened by the back door (SPEC §3, §6).

The people named on an incident are its reporter, its owners and its participants. Being
assigned one of its actions names nobody: an assignee must already see the incident, and
nothing may leave an assignee of open work unable to see it. Participants are added and
removed (by the owners, leads who can see the incident and the reporter); removing one
narrows visibility again, on every read path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app import clock
from app.db import Database
from app.escalation.sweep import sweep
from tests.actions.helpers import in_days, patch, proposal, propose, state
from tests.conftest import Actor, MakeActor, assert_problem
from tests.incidents.helpers import assign, create, move
from tests.incidents.test_visibility import PARTNER, add_partner

Json = dict[str, Any]
COMMENT = "Refinery restart slipped to March."


def fields(problem: Json) -> list[str]:
    return [e["field"] for e in problem["errors"]]


async def name(client: httpx.AsyncClient, by: Actor, incident: Json, who: Actor) -> httpx.Response:
    return await client.post(
        f"/api/v1/incidents/{incident['id']}/participants",
        json={"user_id": str(who.id)},
        headers=by.headers,
    )


async def unname(
    client: httpx.AsyncClient, by: Actor, incident: Json, who: Actor
) -> httpx.Response:
    return await client.delete(
        f"/api/v1/incidents/{incident['id']}/participants/{who.id}", headers=by.headers
    )


async def etag_of(client: httpx.AsyncClient, actor: Actor, incident: Json) -> str:
    response = await client.get(f"/api/v1/incidents/{incident['id']}", headers=actor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    return response.headers["etag"]


async def sees(client: httpx.AsyncClient, actor: Actor, incident: Json) -> bool:
    """Whether ``actor`` reaches the incident on every read path, all agreeing: detail (by
    id and key), the list and a search, its timeline, comments and actions, the action
    queue filtered to it and unfiltered, and each of its actions' detail."""
    base = f"/api/v1/incidents/{incident['id']}"
    reads = [
        await client.get(base, headers=actor.headers),
        await client.get(f"/api/v1/incidents/{incident['key'].lower()}", headers=actor.headers),
        await client.get(f"{base}/timeline", headers=actor.headers),
        await client.get(f"{base}/comments", headers=actor.headers),
        await client.get(f"{base}/actions", headers=actor.headers),
        await client.get(
            "/api/v1/actions", params={"incident": incident["key"]}, headers=actor.headers
        ),
    ]
    codes = {r.status_code for r in reads}
    assert codes in ({200}, {404}), [(r.request.url, r.status_code) for r in reads]
    for response in reads:
        if response.status_code == 404:
            assert_problem(response, 404)
    visible = codes == {200}
    listed = await client.get("/api/v1/incidents", params={"limit": 200}, headers=actor.headers)
    searched = await client.get(
        "/api/v1/incidents", params={"q": incident["title"]}, headers=actor.headers
    )
    queue = await client.get("/api/v1/actions", params={"limit": 200}, headers=actor.headers)
    mine = await client.get("/api/v1/actions", params={"assignee": "me"}, headers=actor.headers)
    for page in (listed, searched):
        assert (incident["key"] in [i["key"] for i in page.json()["items"]]) is visible
    for page in (queue, mine):
        assert all(a["incident_id"] != incident["id"] for a in page.json()["items"]) or visible
    if visible:
        assert [c["data"]["body"] for c in reads[3].json()["items"]] == [COMMENT]
        assert reads[2].json()["items"][0]["type"] == "incident.created"
    for action in reads[4].json()["items"] if visible else []:
        got = await client.get(f"/api/v1/actions/{action['id']}", headers=actor.headers)
        assert got.status_code == 200, got.text
    return visible


async def action_hidden_from(client: httpx.AsyncClient, actor: Actor, action: Json) -> None:
    assert_problem(await client.get(f"/api/v1/actions/{action['id']}", headers=actor.headers), 404)
    queue = await client.get("/api/v1/actions", params={"limit": 200}, headers=actor.headers)
    assert action["id"] not in [a["id"] for a in queue.json()["items"]]


@dataclass
class Case:
    reporter_ministry: str
    tlp: str
    outsider_ministry: str  # a responder of this ministry cannot see the incident


CASES = [
    Case(reporter, tlp, outsider)
    for reporter in ("DOE", "METI", PARTNER)
    for tlp in ("RED", "AMBER+STRICT")
    for outsider in ("DOE", "METI")
    # Under AMBER+STRICT the reporter's own ministry sees it: the outsider is elsewhere.
    if not (tlp == "AMBER+STRICT" and outsider == reporter)
]


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.reporter_ministry}-{c.tlp}-{c.outsider_ministry}" for c in CASES]
)
async def test_assigning_never_widens_and_removing_a_participant_hides_again(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, case: Case
):
    await add_partner(db)
    reporter = await make_actor("responder", case.reporter_ministry)
    outsider = await make_actor("responder", case.outsider_ministry)
    incident = await create(
        client, reporter, tlp=case.tlp, title=f"Back door probe {case.reporter_ministry}"
    )
    commented = await client.post(
        f"/api/v1/incidents/{incident['id']}/comments",
        json={"body": COMMENT},
        headers=reporter.headers,
    )
    assert commented.status_code == 201, commented.text
    assert not await sees(client, outsider, incident)
    owning = case.outsider_ministry

    # The back door, every way in: propose with them as assignee, assign them by PATCH,
    # or make the action JOINT while naming them. Each is 422 and writes nothing.
    before = await state(client, reporter, incident)
    for owning_ministry in (owning, "JOINT"):
        refused = await client.post(
            f"/api/v1/incidents/{incident['id']}/actions",
            json=proposal(owning_ministry=owning_ministry, assignee_id=str(outsider.id)),
            headers=reporter.headers,
        )
        assert fields(assert_problem(refused, 422)) == ["assignee_id"]
    assert await state(client, reporter, incident) == before
    action = await propose(client, reporter, incident, owning_ministry=owning, due_at=in_days(3))
    before = await state(client, reporter, incident)
    for changes in (
        {"assignee_id": str(outsider.id)},
        {"owning_ministry": "JOINT", "assignee_id": str(outsider.id)},
    ):
        refused = await patch(client, reporter, action, changes)
        assert fields(assert_problem(refused, 422)) == ["assignee_id"]
    assert await state(client, reporter, incident) == before
    assert not await sees(client, outsider, incident)
    await action_hidden_from(client, outsider, action)

    # Named by the reporter, they see it and can be given the work.
    etag = await etag_of(client, reporter, incident)
    added = await name(client, reporter, incident, outsider)
    assert added.status_code == 200, added.text
    assert [p["id"] for p in added.json()["participants"]] == [str(outsider.id)]
    assert await etag_of(client, reporter, incident) != etag
    assert await sees(client, outsider, incident)
    assigned = await patch(client, reporter, action, {"assignee_id": str(outsider.id)})
    assert assigned.status_code == 200, assigned.text
    mine = await client.get("/api/v1/actions", params={"assignee": "me"}, headers=outsider.headers)
    assert [a["id"] for a in mine.json()["items"]] == [action["id"]]

    # Taking them off while they hold open work would strand it: refused, nothing changes.
    before = await state(client, reporter, incident)
    refused = assert_problem(await unname(client, reporter, incident, outsider), 409)
    assert outsider.user.display_name in refused["detail"]
    assert await state(client, reporter, incident) == before
    assert await sees(client, outsider, incident)

    # Once the work is handed back, removing them hides the incident again everywhere.
    unassigned = await patch(client, reporter, action, {"assignee_id": None})
    assert unassigned.status_code == 200, unassigned.text
    etag = await etag_of(client, reporter, incident)
    removed = await unname(client, reporter, incident, outsider)
    assert removed.status_code == 204, removed.text
    assert await etag_of(client, reporter, incident) != etag
    assert not await sees(client, outsider, incident)
    await action_hidden_from(client, outsider, action)
    mine = await client.get("/api/v1/actions", params={"assignee": "me"}, headers=outsider.headers)
    assert mine.json()["items"] == []
    timeline = await client.get(
        f"/api/v1/incidents/{incident['id']}/timeline", headers=reporter.headers
    )
    changes = [
        (e["type"], e["data"].get("user_id"))
        for e in timeline.json()["items"]
        if e["type"].startswith("incident.participant")
    ]
    assert changes == [
        ("incident.participant_added", str(outsider.id)),
        ("incident.participant_removed", str(outsider.id)),
    ]
    # And they cannot be assigned again.
    refused = await patch(client, reporter, action, {"assignee_id": str(outsider.id)})
    assert fields(assert_problem(refused, 422)) == ["assignee_id"]


async def test_who_may_add_and_remove_participants(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    await add_partner(db)
    reporter = await make_actor("responder", "DOE")
    doe_lead, meti_lead = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    meti_owner = await make_actor("responder", "METI")
    doe_colleague = await make_actor("responder", "DOE")  # sees AMBER+STRICT, not named
    doe_viewer = await make_actor("viewer", "DOE")
    partner_lead = await make_actor("lead", PARTNER)
    guest = await make_actor("responder", "METI")
    incident = await create(client, reporter, tlp="AMBER+STRICT")
    url = f"/api/v1/incidents/{incident['id']}/participants"

    # The METI lead cannot see it (404), nor can a partner lead; nothing is written.
    before = await state(client, reporter, incident)
    for outsider in (meti_lead, partner_lead):
        assert_problem(await name(client, outsider, incident, guest), 404)
        assert_problem(await unname(client, outsider, incident, reporter), 404)
    # A responder or viewer who sees it, but is neither owner nor reporter, may not (403).
    for bystander in (doe_colleague, doe_viewer):
        assert_problem(await name(client, bystander, incident, guest), 403)
    assert await state(client, reporter, incident) == before

    # The reporter, a lead who sees it and an owner may each add and remove.
    assert (await assign(client, doe_lead, incident, "METI", meti_owner)).status_code == 200
    for adder, remover in ((reporter, doe_lead), (doe_lead, meti_owner), (meti_owner, reporter)):
        added = await name(client, adder, incident, guest)
        assert added.status_code == 200, added.text
        assert str(guest.id) in [p["id"] for p in added.json()["participants"]]
        assert (await name(client, adder, incident, guest)).status_code == 200  # no-op
        # Now a participant, the guest still may not take others off (nor themselves).
        assert_problem(await unname(client, guest, incident, guest), 403)
        removed = await unname(client, remover, incident, guest)
        assert removed.status_code == 204, removed.text
    # A lead of a partner organisation who is named may name others too.
    assert (await name(client, doe_lead, incident, partner_lead)).status_code == 200
    assert (await name(client, partner_lead, incident, guest)).status_code == 200
    assert (await unname(client, partner_lead, incident, guest)).status_code == 204

    # Removing someone who is not a participant is 404; adding a missing user is 422.
    assert_problem(await unname(client, reporter, incident, guest), 404)
    missing = await client.post(
        url, json={"user_id": "00000000-0000-4000-8000-000000000000"}, headers=reporter.headers
    )
    assert fields(assert_problem(missing, 422)) == ["user_id"]

    timeline = await client.get(
        f"/api/v1/incidents/{incident['id']}/timeline", headers=reporter.headers
    )
    people = [
        (e["type"].removeprefix("incident.participant_"), e["actor"]["user"]["id"])
        for e in timeline.json()["items"]
        if e["type"].startswith("incident.participant")
    ]
    assert people == [
        ("added", str(reporter.id)),
        ("removed", str(doe_lead.id)),
        ("added", str(doe_lead.id)),
        ("removed", str(meti_owner.id)),
        ("added", str(meti_owner.id)),
        ("removed", str(reporter.id)),
        ("added", str(doe_lead.id)),
        ("added", str(partner_lead.id)),
        ("removed", str(partner_lead.id)),
    ]


async def test_a_named_partner_user_sees_an_amber_incident_until_removed(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    await add_partner(db)
    reporter, lead = await make_actor("responder", "METI"), await make_actor("lead", "METI")
    partner = await make_actor("responder", PARTNER)
    other_partner = await make_actor("viewer", PARTNER)
    amber = await create(client, reporter, tlp="AMBER", title="Dysprosium licence backlog")
    commented = await client.post(
        f"/api/v1/incidents/{amber['id']}/comments", json={"body": COMMENT}, headers=lead.headers
    )
    assert commented.status_code == 201, commented.text
    assert not await sees(client, partner, amber)
    assert (await name(client, lead, amber, partner)).status_code == 200
    assert await sees(client, partner, amber)
    assert not await sees(client, other_partner, amber)  # only the named one
    assert (await unname(client, lead, amber, partner)).status_code == 204
    assert not await sees(client, partner, amber)


async def test_changes_that_would_leave_an_assignee_blind_are_refused(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, doe_lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    meti_lead, meti_worker = await make_actor("lead", "METI"), await make_actor("responder", "METI")
    other_meti_lead = await make_actor("lead", "METI")
    incident = await create(client, reporter, tlp="GREEN")
    url = f"/api/v1/incidents/{incident['id']}"
    for ministry, owner in (("DOE", doe_lead), ("METI", meti_lead)):
        assert (await assign(client, doe_lead, incident, ministry, owner)).status_code == 200
    # A METI worker and the METI owner hold open METI actions of a GREEN incident.
    work = await propose(
        client, meti_lead, incident, owning_ministry="METI", assignee_id=str(meti_worker.id)
    )
    own = await propose(
        client, meti_lead, incident, owning_ministry="METI", assignee_id=str(meti_lead.id)
    )

    async def set_tlp(tlp: str) -> httpx.Response:
        etag = await etag_of(client, doe_lead, incident)
        return await client.patch(
            url, json={"tlp": tlp}, headers={**doe_lead.headers, "If-Match": etag}
        )

    # Raising the marking past what the METI worker may see is refused, naming them.
    before = await state(client, doe_lead, incident)
    for tlp in ("AMBER+STRICT", "RED"):
        refused = assert_problem(await set_tlp(tlp), 422)
        assert fields(refused) == ["tlp"]
        assert meti_worker.user.display_name in refused["detail"]
        assert meti_lead.user.display_name not in refused["detail"]  # an owner: named
    assert await state(client, doe_lead, incident) == before
    # Named as a participant, the worker keeps sight and the marking can go up.
    assert (await name(client, doe_lead, incident, meti_worker)).status_code == 200
    raised = await set_tlp("RED")
    assert raised.status_code == 200 and raised.json()["tlp"] == "RED"

    # Replacing the METI owner, who holds an open action, would blind them: refused.
    before = await state(client, doe_lead, incident)
    refused = assert_problem(await assign(client, doe_lead, incident, "METI", other_meti_lead), 409)
    assert meti_lead.user.display_name in refused["detail"]
    # Nor may the worker be taken off while their action is open.
    assert_problem(await unname(client, doe_lead, incident, meti_worker), 409)
    assert await state(client, doe_lead, incident) == before

    # Finished work binds nobody: the worker's action done, the owner's reassigned.
    cancelled = await client.post(
        f"/api/v1/actions/{work['id']}/transitions",
        json={"to": "cancelled", "reason": "Covered by JOGMEC"},
        headers={**meti_lead.headers, "If-Match": f'"{work["version"]}"'},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (await unname(client, doe_lead, incident, meti_worker)).status_code == 204
    assert (await patch(client, meti_lead, own, {"assignee_id": None})).status_code == 200
    replaced = await assign(client, doe_lead, incident, "METI", other_meti_lead)
    assert replaced.status_code == 200, replaced.text
    for blinded in (meti_worker, meti_lead):
        assert_problem(await client.get(url, headers=blinded.headers), 404)


async def test_owners_are_responders_or_above_of_their_ministry(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    incident = await create(client, reporter)
    before = await state(client, lead, incident)
    for ministry, candidate in (
        ("DOE", await make_actor("viewer", "DOE")),
        ("METI", await make_actor("viewer", "METI")),
        ("METI", await make_actor("responder", "DOE")),
    ):
        refused = assert_problem(await assign(client, lead, incident, ministry, candidate), 422)
        assert fields(refused) == ["user_id"]
    assert await state(client, lead, incident) == before
    for ministry, role in (("DOE", "responder"), ("METI", "lead"), ("METI", "admin")):
        owner = await make_actor(role, ministry)
        assigned = await assign(client, lead, incident, ministry, owner)
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["owners"][ministry]["id"] == str(owner.id)


async def test_participants_and_signoffs_change_the_etag_escalations_do_not(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    reporter, doe_lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    meti_lead, helper = await make_actor("lead", "METI"), await make_actor("viewer", "METI")
    incident = await create(client, reporter, severity="SEV1")
    etags = [await etag_of(client, reporter, incident)]

    # An escalation (triage overdue) changes neither version nor ETag.
    report = await sweep(db)
    assert report.escalations == []
    later = clock.now() + timedelta(hours=3)
    clock.set_source(lambda: later)
    report = await sweep(db)
    assert [(e.item_type, e.level) for e in report.escalations] == [("triage", 1), ("triage", 2)]
    assert await etag_of(client, reporter, incident) == etags[-1]

    async def changed(response: httpx.Response, status: int) -> None:
        assert response.status_code == status, response.text
        etag = await etag_of(client, reporter, incident)
        assert etag not in etags
        etags.append(etag)

    await changed(await name(client, doe_lead, incident, helper), 200)
    await changed(await unname(client, doe_lead, incident, helper), 204)
    for ministry, owner in (("DOE", doe_lead), ("METI", meti_lead)):
        await changed(await assign(client, doe_lead, incident, ministry, owner), 200)
    await changed(await move(client, doe_lead, incident, "triaged"), 200)
    action = await propose(
        client, doe_lead, incident, assignee_id=str(doe_lead.id), due_at=in_days(2)
    )
    await changed(await move(client, doe_lead, incident, "responding"), 200)
    cancelled = await client.post(
        f"/api/v1/actions/{action['id']}/transitions",
        json={"to": "cancelled", "reason": "Superseded"},
        headers={**doe_lead.headers, "If-Match": f'"{action["version"]}"'},
    )
    assert cancelled.status_code == 200, cancelled.text
    await changed(
        await move(client, doe_lead, incident, "resolved", resolution_summary="Supply restored"),
        200,
    )
    for signer in (doe_lead, meti_lead):
        signed = await client.post(
            f"/api/v1/incidents/{incident['id']}/signoffs", json={}, headers=signer.headers
        )
        await changed(signed, 201)
        assert signed.headers["etag"] == etags[-1]
