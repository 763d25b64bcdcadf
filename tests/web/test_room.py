"""The incident room: every move through the page, guards named, errors beside fields,
comments rendered safely, 403/404 by role and marking (SPEC §9, §2, §3, §6)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app import clock
from app.actions.models import Action
from app.db import Database
from app.incidents.models import Incident
from tests.web.conftest import Browser, SignedIn, report


def form_of(html: str, marker: str) -> str:
    """The <form> containing ``marker``."""
    at = html.index(marker)
    return html[html.rindex("<form", 0, at) : html.index("</form>", at)]


async def version_of(db: Database, key: str) -> str:
    async with db.unit_of_work(readonly=True) as session:
        return str(await session.scalar(select(Incident.version).where(Incident.key == key)))


async def move(browser: Browser, db: Database, key: str, to: str, **fields: str) -> None:
    response = await browser.post(
        f"/incidents/{key}/transition", {"to": to, "version": await version_of(db, key), **fields}
    )
    assert response.status_code == 303, response.text[:2000]


async def action_move(browser: Browser, db: Database, to: str, **fields: str) -> None:
    async with db.unit_of_work(readonly=True) as session:
        action = (await session.scalars(select(Action))).one()
    response = await browser.post(
        f"/actions/{action.id}/transition", {"to": to, "version": str(action.version), **fields}
    )
    assert response.status_code == 303, response.text[:3000]


async def test_the_room_carries_an_incident_to_closed(signed_in: SignedIn, db: Database):
    doe = await signed_in("lead", "DOE")
    meti = await signed_in("lead", "METI")
    incident = await report(db, doe.actor, title="Dysprosium licensing", minerals=["Dy"])
    key = incident.key
    room = (await doe.get(f"/incidents/{key}")).text
    # Triage is disabled, naming every unmet guard from the lifecycle table.
    triage = form_of(room, 'data-move="triaged"')
    assert "disabled" in triage
    for guard in (
        "severity must be set",
        "a DOE owner must be assigned",
        "a METI owner must be assigned",
    ):
        assert guard in triage
    # Owners are picked from the directory by name (its options carry their names).
    assert (
        f">{doe.actor.user.display_name} (DOE" in room
        and f">{meti.actor.user.display_name} (METI" in room
    )
    for browser, ministry in ((doe, "DOE"), (meti, "METI")):
        done = await browser.post(
            f"/incidents/{key}/owners", {"ministry": ministry, "user_id": str(browser.actor.id)}
        )
        assert done.status_code == 303
    async with db.unit_of_work() as session:  # severity through the API's rule path
        row = await session.scalar(select(Incident).where(Incident.key == key))
        row.severity = "SEV2"
    await move(doe, db, key, "triaged")
    room = (await meti.get(f"/incidents/{key}")).text
    assert "at least one response action that is not rejected or cancelled is required" in form_of(
        room, 'data-move="responding"'
    )
    due = (clock.now() + timedelta(days=3)).astimezone().strftime("%Y-%m-%dT%H:%M")
    proposed = await meti.post(
        f"/incidents/{key}/actions",
        {
            "title": "Release stockpile",
            "kind": "stockpile_release",
            "owning_ministry": "METI",
            "assignee_id": str(meti.actor.id),
            "priority": "high",
            "due_at": due,
        },
    )
    assert proposed.status_code == 303
    await action_move(meti, db, "approved")
    await move(doe, db, key, "responding")
    await action_move(meti, db, "in_progress")
    await action_move(meti, db, "completed", outcome="Released 20 t")
    await move(doe, db, key, "resolved", resolution_summary="Supply restored")
    room = (await doe.get(f"/incidents/{key}")).text
    closing = form_of(room, 'data-move="closed"')
    assert "disabled" in closing and "a METI lead or owner must sign off" in closing
    for browser in (doe, meti):
        assert (await browser.post(f"/incidents/{key}/signoff", {"note": "ok"})).status_code == 303
    await move(meti, db, key, "closed")
    room = (await doe.get(f"/incidents/{key}")).text
    assert "No further moves" in room
    timeline = room[room.index('id="timeline"') :]
    for event in (
        "incident.created",
        "incident.owner_assigned",
        "incident.status_changed",
        "action.created",
        "action.approved",
        "action.status_changed",
        "incident.signed_off",
    ):
        assert f'data-type="{event}"' in timeline, event
    assert "resolved → closed" in timeline


async def test_refusals_are_shown_beside_the_form_and_nothing_is_written(
    signed_in: SignedIn, db: Database
):
    lead = await signed_in("lead", "DOE")
    incident = await report(db, lead.actor)
    key = incident.key
    refused = await lead.post(
        f"/incidents/{key}/transition", {"to": "triaged", "version": await version_of(db, key)}
    )
    assert refused.status_code == 409
    assert "severity must be set" in form_of(refused.text, 'data-move="triaged"')
    stale = await lead.post(
        f"/incidents/{key}/transition", {"to": "rejected", "version": "999", "reason": "dup"}
    )
    assert stale.status_code == 412 and "If-Match does not match" in stale.text
    past = (clock.now() - timedelta(days=1)).astimezone().strftime("%Y-%m-%dT%H:%M")
    bad = await lead.post(
        f"/incidents/{key}/actions",
        {"title": "", "kind": "financing", "owning_ministry": "DOE", "due_at": past},
    )
    assert bad.status_code == 422
    new_action = (
        form_of(bad.text, 'id="new-action"') + bad.text[bad.text.index('id="new-action"') :][:6000]
    )
    assert 'class="field-error"' in new_action
    async with db.unit_of_work(readonly=True) as session:
        assert (await session.scalars(select(Action))).all() == []
        assert (
            await session.scalar(select(Incident.status).where(Incident.key == key))
        ) == "reported"


async def test_comments_render_markdown_without_script(signed_in: SignedIn, db: Database):
    lead = await signed_in("lead", "DOE")
    incident = await report(db, lead.actor)
    body = (
        "**Bold** <script>alert(1)</script> [x](javascript:alert(2)) "
        "<img src=x onerror=alert(3)> [ok](https://example.org)"
    )
    assert (
        await lead.post(f"/incidents/{incident.key}/comments", {"body": body})
    ).status_code == 303
    room = (await lead.get(f"/incidents/{incident.key}")).text
    comment = room[room.index('class="comment"') :].split("</article>")[0]
    assert "<strong>Bold</strong>" in comment
    # Raw HTML stays text; a javascript: link is never a link; real links are kept.
    assert "<script" not in comment and "&lt;script&gt;" in comment
    assert "<img" not in comment and 'href="javascript' not in comment
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">ok</a>' in comment
    empty = await lead.post(f"/incidents/{incident.key}/comments", {"body": "   "})
    assert empty.status_code == 422 and 'class="field-error"' in empty.text


async def test_roles_and_markings_on_the_room(signed_in: SignedIn, db: Database):
    reporter = await signed_in("responder", "DOE")
    viewer = await signed_in("viewer", "DOE")
    partner_free = await signed_in("lead", "METI")
    amber_strict = await report(db, reporter.actor, tlp="AMBER+STRICT")
    # Another ministry's user: 404 as if it did not exist, reads and writes alike.
    assert (await partner_free.get(f"/incidents/{amber_strict.key}")).status_code == 404
    assert (
        await partner_free.post(f"/incidents/{amber_strict.key}/comments", {"body": "hi"})
    ).status_code == 404
    assert (await partner_free.get("/incidents/RRG-9999")).status_code == 404
    # A viewer sees it but may not comment, report or move it.
    room = await viewer.get(f"/incidents/{amber_strict.key}")
    assert room.status_code == 200 and 'id="comment-body"' not in room.text
    assert (
        await viewer.post(f"/incidents/{amber_strict.key}/comments", {"body": "hi"})
    ).status_code == 403
    assert (await viewer.get("/incidents/new")).status_code == 403
    moved = await viewer.post(
        f"/incidents/{amber_strict.key}/transition",
        {"to": "rejected", "version": await version_of(db, amber_strict.key), "reason": "no"},
    )
    assert moved.status_code == 403
    # A viewer sees the moves disabled with who may make them.
    assert "only leads, admins and the incident&#39;s owners may move it" in room.text


async def test_participants_are_named_from_the_directory(signed_in: SignedIn, db: Database):
    reporter = await signed_in("responder", "DOE")
    colleague = await signed_in("responder", "METI")
    red = await report(db, reporter.actor, tlp="RED")
    assert (await colleague.get(f"/incidents/{red.key}")).status_code == 404
    options = await reporter.get(
        "/directory/options", params={"q": colleague.actor.user.display_name}
    )
    assert re.search(rf'<option value="{colleague.actor.id}">', options.text)
    added = await reporter.post(
        f"/incidents/{red.key}/participants", {"user_id": str(colleague.actor.id)}
    )
    assert added.status_code == 303
    assert (await colleague.get(f"/incidents/{red.key}")).status_code == 200
    removed = await reporter.post(f"/incidents/{red.key}/participants/{colleague.actor.id}/remove")
    assert removed.status_code == 303
    assert (await colleague.get(f"/incidents/{red.key}")).status_code == 404
    garbage = await reporter.post(f"/incidents/{red.key}/participants", {"user_id": "not-a-user"})
    assert garbage.status_code == 422 and "pick someone from the list" in garbage.text


ROOM_PARTS = ("head", "details", "people", "moves", "actions", "comments", "timeline")


async def test_the_live_refresh_sends_every_part_and_rechecks_visibility(
    signed_in: SignedIn, db: Database
):
    reporter = await signed_in("responder", "DOE")
    colleague = await signed_in("responder", "METI")
    red = await report(db, reporter.actor, tlp="RED", title="Terbium shipment seized")
    await reporter.post(f"/incidents/{red.key}/participants", {"user_id": str(colleague.actor.id)})
    # The room names its parts; the refresh sends each one, marked to be swapped by id.
    room = (await colleague.get(f"/incidents/{red.key}")).text
    parts = await colleague.get(f"/incidents/{red.key}/parts")
    assert parts.status_code == 200 and parts.headers["cache-control"] == "no-store"
    for name in ROOM_PARTS:
        assert f'id="room-{name}"' in room and f'id="room-{name}" hx-swap-oob' not in room
        assert f'id="room-{name}" hx-swap-oob="true"' in parts.text
    assert "<html" not in parts.text and "Terbium shipment seized" in parts.text
    # A change shows in the next refresh.
    await reporter.post(f"/incidents/{red.key}/comments", {"body": "Customs hold confirmed"})
    assert "Customs hold confirmed" in (await colleague.get(f"/incidents/{red.key}/parts")).text
    # Once no longer named on the RED incident, the refresh is 404 and carries nothing of it.
    await reporter.post(f"/incidents/{red.key}/participants/{colleague.actor.id}/remove")
    gone = await colleague.get(f"/incidents/{red.key}/parts")
    assert gone.status_code == 404
    assert "Terbium" not in gone.text and "Customs hold" not in gone.text


async def test_the_priority_breakdown_shows_list_inputs_as_words(signed_in: SignedIn, db: Database):
    lead = await signed_in("lead", "DOE")
    none = await report(db, lead.actor, title="No sectors")
    some = await report(db, lead.actor, title="Sectors", affected_sectors=["semiconductors"])
    for incident in (none, some):
        html = (await lead.get(f"/incidents/{incident.key}")).text
        table = html[html.index('<table class="breakdown">') :].split("</table>")[0]
        assert "[" not in table and "&#39;" not in table, table
    assert "semiconductors" in table
