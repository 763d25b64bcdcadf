"""The triage board: visibility, grouping, order, filters, badges (SPEC §9, §6)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from app import clock
from app.actions.models import Action
from app.db import Database, table_of
from app.web import board
from tests.web.conftest import SignedIn, report

BOARD_STATEMENTS = 9


def keys_in(html: str) -> list[str]:
    return re.findall(r'data-key="(RRG-\d+)"', html)


def column(html: str, status: str) -> str:
    start = html.index(f'id="col-{status}"')
    end = html.find('<section class="column"', start)
    return html[start : end if end > 0 else len(html)]


async def test_a_red_incident_never_reaches_the_board_of_someone_not_named(
    signed_in: SignedIn, db: Database
):
    reporter = await signed_in("responder", "DOE")
    outsider = await signed_in("lead", "METI")
    red = await report(db, reporter.actor, title="Red source report", tlp="RED")
    green = await report(db, reporter.actor, title="Public report", tlp="GREEN")
    theirs = (await outsider.get("/")).text
    assert green.key in keys_in(theirs)
    assert red.key not in theirs and "Red source report" not in theirs
    # Filtering by the marking shows nothing either, and the room is 404.
    assert red.key not in (await outsider.get("/?tlp=RED")).text
    room = await outsider.get(f"/incidents/{red.key}")
    assert room.status_code == 404 and "Red source report" not in room.text
    assert red.key in keys_in((await reporter.get("/")).text)


async def test_incidents_are_grouped_by_status_and_sorted_by_severity(
    signed_in: SignedIn, db: Database
):
    lead = await signed_in("lead", "DOE")
    low = await report(db, lead.actor, title="Low", severity="SEV4")
    high = await report(db, lead.actor, title="High", severity="SEV1")
    watched = await report(db, lead.actor, title="Watched", status="watch")
    html = (await lead.get("/")).text
    reported = keys_in(column(html, "reported"))
    assert reported.index(high.key) < reported.index(low.key)
    assert keys_in(column(html, "watch")) == [watched.key]
    assert "Open incidents: 3" in html
    # SEV1 is held to a one-hour triage deadline: a countdown shows it.
    card = html[html.index(f'data-key="{high.key}"') :]
    assert 'class="countdown"' in card.split("</article>")[0]


async def test_filters_live_in_the_url(signed_in: SignedIn, db: Database):
    lead = await signed_in("lead", "DOE")
    gallium = await report(
        db, lead.actor, title="Ga", minerals=["Ga"], severity="SEV2", tlp="GREEN"
    )
    dysprosium = await report(db, lead.actor, title="Dy", minerals=["Dy"], severity="SEV3")
    assert keys_in((await lead.get("/?mineral=Ga")).text) == [gallium.key]
    assert keys_in((await lead.get("/?severity=SEV3")).text) == [dysprosium.key]
    assert keys_in((await lead.get("/?tlp=GREEN")).text) == [gallium.key]
    assert set(keys_in((await lead.get("/?ministry=DOE")).text)) == {gallium.key, dysprosium.key}
    assert keys_in((await lead.get("/?ministry=METI")).text) == []
    assert keys_in((await lead.get(f"/?owner={lead.actor.id}")).text) == []
    # The fragment htmx reloads carries the same filters.
    fragment = await lead.get("/?mineral=Ga", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<div id="board"')
    assert 'hx-get="/?mineral=Ga"' in fragment.text and "<html" not in fragment.text


async def test_overdue_only_and_the_overdue_badge(signed_in: SignedIn, db: Database):
    lead = await signed_in("lead", "DOE")
    late = await report(db, lead.actor, title="Late", severity="SEV1")
    later = clock.now() + timedelta(hours=2)  # past SEV1's one-hour triage deadline
    clock.set_source(lambda: later)
    fresh = await report(db, lead.actor, title="Fresh", severity="SEV4")
    html = (await lead.get("/?overdue=1")).text
    assert keys_in(html) == [late.key]
    assert "Overdue" in html and 'class="countdown overdue"' in html
    assert fresh.key in keys_in((await lead.get("/")).text)


async def test_the_board_shows_times_in_japanese_for_a_japanese_reader(
    signed_in: SignedIn, db: Database
):
    lead = await signed_in("lead", "METI")
    await lead.post("/preferences/language", {"language": "ja"})
    await report(db, lead.actor, title="ガリウム輸出規制", severity="SEV1")
    html = (await lead.get("/")).text
    assert "報告済み" in html and "ガリウム輸出規制" in html
    assert re.search(r"\d+\s*分後|\d+\s*時間後", html)  # "in … minutes/hours" in Japanese


async def _open_action_due(db: Database, incident: Any, lead: Any, due: datetime) -> None:
    """An approved action on the incident, due then (written directly: the board reads
    open actions whatever the incident's status)."""
    async with db.unit_of_work() as session:
        await session.execute(
            insert(table_of(Action)),
            [
                {
                    "id": uuid.uuid4(),
                    "incident_id": incident.id,
                    "title": "Due soon",
                    "kind": "other",
                    "owning_ministry": "DOE",
                    "assignee_id": lead.id,
                    "due_at": due,
                    "status": "approved",
                    "created_by_id": lead.id,
                    "created_at": clock.now(),
                    "updated_at": clock.now(),
                }
            ],
        )


async def test_each_column_shows_its_most_urgent_cards_and_counts_them_all(
    signed_in: SignedIn, db: Database, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(board, "PER_STATUS", 3)
    lead = await signed_in("lead", "DOE")
    now = clock.now()

    async def reported(hours_ago: float, severity: str | None) -> Any:
        clock.set_source(lambda: now - timedelta(hours=hours_ago))
        return await report(db, lead.actor, title=f"{severity} {hours_ago}", severity=severity)

    # SEV2 is held to a four-hour triage deadline; unrated incidents to SEV3's 24 hours.
    due_in_1h = await reported(3, "SEV2")
    due_in_3h = await reported(1, "SEV2")
    action_due = await reported(2, "SEV2")  # triage due in 2 h, but an action in 30 min
    most_severe = await reported(0, "SEV1")
    unrated = await reported(10, None)
    clock.set_source(lambda: now)
    await _open_action_due(db, action_due, lead.actor, now + timedelta(minutes=30))
    html = (await lead.get("/")).text
    shown = keys_in(column(html, "reported"))
    assert shown == [most_severe.key, action_due.key, due_in_1h.key]
    assert '<span class="badge">5</span>' in column(html, "reported")
    assert "Open incidents: 5" in html
    card = html[html.index(f'data-key="{action_due.key}"') :].split("</article>")[0]
    assert "Deadline (action)" in card and "in 30 minutes" in card
    # Past every deadline but the unrated one's, overdue only keeps the order and counts.
    clock.set_source(lambda: now + timedelta(hours=5))
    overdue = (await lead.get("/?overdue=1")).text
    assert keys_in(column(overdue, "reported")) == [most_severe.key, action_due.key, due_in_1h.key]
    assert '<span class="badge">4</span>' in column(overdue, "reported")
    assert unrated.key not in overdue and due_in_3h.key not in overdue


async def test_a_board_render_sends_a_fixed_number_of_statements(
    signed_in: SignedIn, db: Database, count_queries: Any
):
    lead = await signed_in("lead", "DOE")

    async def statements() -> int:
        counter = count_queries()
        response = await lead.get("/", headers={"HX-Request": "true"})
        assert response.status_code == 200
        return len(counter.queries)

    await report(db, lead.actor, title="One", severity="SEV2")
    few = await statements()
    for n in range(12):
        incident = await report(db, lead.actor, title=f"More {n}", severity="SEV3")
        if n % 3 == 0:
            await _open_action_due(db, incident, lead.actor, clock.now() + timedelta(hours=n))
    assert await statements() == few
    # The session, the policies, the ranked cards, the incidents shown with what they
    # present (minerals, participants, people named), the filter choices (2).
    assert few == BOARD_STATEMENTS, few
