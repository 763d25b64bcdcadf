"""Report form, my actions, notifications, the directory fragment, catalogues."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app import clock
from app.auth.service import Principal
from app.db import Database
from app.incidents.models import Incident
from app.notifications.models import Notification
from tests.web.conftest import SignedIn, report


async def test_reporting_an_incident_opens_its_room(signed_in: SignedIn, db: Database):
    responder = await signed_in("responder", "METI")
    form = await responder.get("/incidents/new")
    assert form.status_code == 200 and 'name="minerals"' in form.text
    created = await responder.client.post(
        "/incidents/new",
        data={
            "csrf_token": responder.csrf,
            "title": "Terbium licensing",
            "summary": "**New** rules",
            "minerals": ["Tb", "Dy"],
            "category": "export_control",
            "tlp": "AMBER",
            "severity": "SEV2",
            "status": "reported",
            "origin_country": "cn",
            "affected_sectors": ["defense", "energy"],
            "supply_share_affected_pct": "62.5",
            "days_of_cover_US": "45",
            "days_of_cover_JP": "60",
            "effective_at": "2030-01-15T09:00",
        },
    )
    assert created.status_code == 303
    key = created.headers["location"].rsplit("/", 1)[1]
    async with db.unit_of_work(readonly=True) as session:
        incident = await session.scalar(select(Incident).where(Incident.key == key))
    assert incident.title == "Terbium licensing" and incident.origin_country == "CN"
    assert (
        incident.days_of_cover == {"US": 45, "JP": 60}
        and incident.supply_share_affected_pct == 62.5
    )
    # Typed in the reporter's zone (Tokyo): 09:00 JST is 00:00 UTC.
    assert incident.effective_at.isoformat() == "2030-01-15T00:00:00+00:00"
    room = (await responder.get(f"/incidents/{key}")).text
    assert "<strong>New</strong> rules" in room
    # Both capitals' clocks, the reader's (Tokyo) first.
    assert re.search(r"JST</abbr></span> · <span class=\"clock\">[^<]*<abbr>ET", room)


async def test_report_errors_are_shown_beside_each_field(signed_in: SignedIn, db: Database):
    responder = await signed_in("responder", "DOE")
    refused = await responder.client.post(
        "/incidents/new",
        data={
            "csrf_token": responder.csrf,
            "title": "",
            "category": "nonsense",
            "supply_share_affected_pct": "140",
            "summary": "kept",
        },
    )
    assert refused.status_code == 422
    for field in ("title", "minerals", "category", "supply_share_affected_pct"):
        assert f'id="err-{field}"' in refused.text, field
    assert ">kept</textarea>" in refused.text  # what was typed stays
    unknown = await responder.client.post(
        "/incidents/new",
        data={
            "csrf_token": responder.csrf,
            "title": "x",
            "category": "other",
            "minerals": ["<b>Zz</b>"],
        },
    )
    assert unknown.status_code == 422 and 'id="err-minerals"' in unknown.text
    assert "&lt;b&gt;Zz&lt;/b&gt;" in unknown.text and "<b>Zz</b>" not in unknown.text
    async with db.unit_of_work(readonly=True) as session:
        assert (await session.scalars(select(Incident))).all() == []


async def test_my_actions_lists_what_is_assigned_to_me(signed_in: SignedIn, db: Database):
    from app.actions import service as actions
    from app.actions.schemas import ActionCreate

    lead = await signed_in("lead", "DOE")
    incident = await report(db, lead.actor, title="Cobalt refinery outage", minerals=["Co"])
    async with db.unit_of_work() as session:
        row = await session.get(Incident, incident.id)
        await actions.create(
            session,
            Principal(user=lead.actor.user),
            row,
            ActionCreate(
                title="Call the refiner",
                kind="information_sharing",
                owning_ministry="DOE",
                assignee_id=lead.actor.id,
                due_at=clock.now() + timedelta(hours=5),
            ),
        )
    page = (await lead.get("/actions/mine")).text
    assert "Call the refiner" in page and f"/incidents/{incident.key}#action-" in page
    other = await signed_in("responder", "DOE")
    assert "Call the refiner" not in (await other.get("/actions/mine")).text


async def test_notifications_inbox_and_unread_count(signed_in: SignedIn, db: Database):
    reader = await signed_in("lead", "DOE")
    stranger = await signed_in("lead", "METI")
    red = await report(db, stranger.actor, title="Secret", tlp="RED")
    visible = await report(db, reader.actor, title="Seen")
    async with db.unit_of_work() as session:
        for incident, title in ((visible, "Triage overdue"), (red, "About a RED incident")):
            session.add(
                Notification(
                    user_id=reader.actor.id,
                    incident_id=incident.id,
                    type="incident.escalated",
                    title=title,
                    data={},
                    created_at=clock.now(),
                )
            )
    page = (await reader.get("/notifications")).text
    assert "Triage overdue" in page and "About a RED incident" not in page
    assert 'id="unread-count" aria-label="1 unread">1<' in page
    note_id = re.search(r"/notifications/([0-9a-f-]+)/read", page).group(1)
    assert (await reader.post(f"/notifications/{note_id}/read")).status_code == 303
    page = (await reader.get("/notifications")).text
    assert 'id="unread-count" aria-label="0 unread">0<' in page
    assert (await stranger.post(f"/notifications/{note_id}/read")).status_code == 404
    assert (await reader.post("/notifications/read-all")).status_code == 303


async def test_the_directory_fragment_finds_people_by_name(signed_in: SignedIn):
    lead = await signed_in("lead", "DOE")
    viewer = await signed_in("viewer", "METI")
    options = (await lead.get("/directory/options", params={"q": "meti viewer"})).text
    assert f'value="{viewer.actor.id}"' in options and "<html" not in options
    owners = (
        await lead.get(
            "/directory/options",
            params={"ministry": "METI", "role": ["responder", "lead", "admin"]},
        )
    ).text
    assert f'value="{viewer.actor.id}"' not in owners
    assert "Nobody found" in (await lead.get("/directory/options", params={"q": "zzzz"})).text


def test_every_message_has_a_japanese_translation():
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    checked = subprocess.run(
        [sys.executable, "tools/catalogues.py", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
