from __future__ import annotations

import httpx

from tests.conftest import MakeActor, assert_problem
from tests.incidents.helpers import assign, create, move, report


async def test_report_and_read_back(client: httpx.AsyncClient, make_actor: MakeActor):
    analyst = await make_actor("responder", "METI")
    created = await create(client, analyst, title="ガリウム輸出規制", minerals=["Ga", "Ge"])
    assert created["key"] == "RRG-0001"
    assert created["status"] == "reported" and created["version"] == 1
    assert created["minerals"] == ["Ga", "Ge"]
    assert created["reporter"]["id"] == str(analyst.id)
    assert created["owners"] == {"DOE": None, "METI": None}
    assert created["possible_duplicates"] == []
    second = await create(client, analyst)
    assert second["key"] == "RRG-0002"
    assert [d["key"] for d in second["possible_duplicates"]] == ["RRG-0001"]
    by_key = await client.get("/api/v1/incidents/rrg-0001", headers=analyst.headers)
    assert by_key.status_code == 200 and by_key.headers["etag"] == '"1"'
    assert by_key.json()["title"] == "ガリウム輸出規制"
    timeline = await client.get(
        f"/api/v1/incidents/{created['id']}/timeline", headers=analyst.headers
    )
    events = timeline.json()["items"]
    assert [e["type"] for e in events] == ["incident.created"]
    assert events[0]["actor"]["kind"] == "token" and events[0]["actor"]["user"]["id"] == str(
        analyst.id
    )


async def test_viewer_cannot_report_and_bad_input_names_fields(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    viewer, analyst = await make_actor("viewer"), await make_actor("responder")
    assert_problem(
        await client.post("/api/v1/incidents", json=report(), headers=viewer.headers), 403
    )
    for field, value in [
        ("minerals", ["unobtainium"]),
        ("category", "alien_invasion"),
        ("supply_share_affected_pct", 120),
        ("origin_country", "china"),
        ("tlp", "PURPLE"),
    ]:
        body = assert_problem(
            await client.post(
                "/api/v1/incidents", json=report(**{field: value}), headers=analyst.headers
            ),
            422,
        )
        assert any(e["field"].startswith(field) for e in body["errors"]), body
    listing = await client.get("/api/v1/incidents", headers=analyst.headers)
    assert listing.json()["items"] == []


async def test_full_lifecycle_with_bilateral_signoff(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder")
    doe_lead, meti_lead = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    incident = await create(client, reporter)
    refused = await move(client, doe_lead, incident, "triaged")
    body = assert_problem(refused, 409)
    assert {u["code"] for u in body["unmet"]} == {
        "severity_required",
        "doe_owner_required",
        "meti_owner_required",
    }
    assert (await assign(client, doe_lead, incident, "DOE", doe_lead)).status_code == 200
    wrong = await assign(client, doe_lead, incident, "METI", doe_lead)
    assert assert_problem(wrong, 422)["errors"][0]["field"] == "user_id"
    assert (await assign(client, doe_lead, incident, "METI", meti_lead)).status_code == 200
    etag = (
        await client.get(f"/api/v1/incidents/{incident['id']}", headers=doe_lead.headers)
    ).headers["etag"]
    patched = await client.patch(
        f"/api/v1/incidents/{incident['id']}",
        json={"severity": "SEV1"},
        headers={**doe_lead.headers, "If-Match": etag},
    )
    assert patched.status_code == 200, patched.text
    triaged = await move(client, doe_lead, incident, "triaged")
    assert triaged.status_code == 200 and triaged.json()["triaged_at"]
    no_action = assert_problem(await move(client, meti_lead, incident, "responding"), 409)
    assert [u["code"] for u in no_action["unmet"]] == ["live_action_required"]


async def test_patch_needs_if_match(client: httpx.AsyncClient, make_actor: MakeActor):
    reporter = await make_actor("responder")
    incident = await create(client, reporter)
    url = f"/api/v1/incidents/{incident['id']}"
    assert_problem(await client.patch(url, json={"title": "x"}, headers=reporter.headers), 428)
    stale = {**reporter.headers, "If-Match": '"7"'}
    assert_problem(await client.patch(url, json={"title": "x"}, headers=stale), 412)
    ok = await client.patch(
        url, json={"title": "New title"}, headers={**reporter.headers, "If-Match": '"1"'}
    )
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    again = await client.patch(
        url, json={"title": "Again"}, headers={**reporter.headers, "If-Match": '"1"'}
    )
    assert_problem(again, 412)
    events = (await client.get(f"{url}/timeline", headers=reporter.headers)).json()["items"]
    assert events[-1]["type"] == "incident.updated"
    assert events[-1]["data"] == {
        "before": {"title": incident["title"]},
        "after": {"title": "New title"},
    }
    # A responder may not triage (severity) even on their own report.
    refused = await client.patch(
        url, json={"severity": "SEV2"}, headers={**reporter.headers, "If-Match": '"2"'}
    )
    assert_problem(refused, 403)


async def test_a_rejected_incident_cannot_be_edited(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, lead = await make_actor("responder"), await make_actor("lead")
    incident = await create(client, reporter)
    rejected = await move(client, lead, incident, "rejected", reason="Not a shortage")
    assert rejected.status_code == 200
    url = f"/api/v1/incidents/{incident['id']}"
    refused = await client.patch(
        url,
        json={"title": "Changed"},
        headers={**lead.headers, "If-Match": rejected.headers["etag"]},
    )
    assert_problem(refused, 409)
    after = await client.get(url, headers=lead.headers)
    assert (
        after.json()["title"] == incident["title"]
        and after.headers["etag"] == rejected.headers["etag"]
    )


async def test_the_duplicate_hint_names_only_what_the_reporter_sees_newest_first(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    doe, meti = await make_actor("responder", "DOE"), await make_actor("responder", "METI")
    lead = await make_actor("lead", "DOE")
    older = await create(client, doe, minerals=["Ga"])
    await create(client, doe, minerals=["Ge"])  # no mineral in common
    await create(client, doe, minerals=["Ga"], category="price_spike")  # another category
    await create(client, meti, minerals=["Ga"], tlp="RED")  # out of DOE's sight
    rejected = await create(client, doe, minerals=["Ga"])
    refused = await move(client, lead, rejected, "rejected", reason="Not a shortage")
    assert refused.status_code == 200, refused.text  # no longer open
    newer = await create(client, doe, minerals=["Ge", "Ga"], tlp="AMBER")
    new = await create(client, doe, minerals=["Ga", "Dy"])
    assert new["possible_duplicates"] == [
        {"id": i["id"], "key": i["key"], "title": i["title"], "status": "reported"}
        for i in (newer, older)
    ]
    # The METI reporter sees their own RED incident and the GREEN and AMBER ones.
    hinted = await create(client, meti, minerals=["Ga"])
    assert [d["key"] for d in hinted["possible_duplicates"]] == [
        new["key"],
        newer["key"],
        "RRG-0004",
        older["key"],
    ]
