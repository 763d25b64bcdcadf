"""The web client in a real browser (Debian's Chromium driven by Playwright) against a real
server: two co-leads carry an incident from report to closed, live, in English and in
Japanese; a form without its CSRF token is refused. Screenshots go to var/screenshots."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.db import Database
from tests.conftest import CHROMIUM, REPO_ROOT, Actor, MakeActor
from tests.web.conftest import PASSWORD, report
from tests.web.live import sse_clients_reach

if not CHROMIUM.exists():  # RRG_REQUIRE_BROWSER=1 fails the session instead (tests/conftest.py)
    pytest.skip("Chromium is not installed", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect

SHOTS = REPO_ROOT / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
WIDE, NARROW = 1280, 800


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


class Person:
    """One user's browser window; records every console error (CSP violations included)."""

    def __init__(self, page: Page, base: str, actor: Actor) -> None:
        self.page, self.base, self.actor = page, base, actor
        self.console_errors: list[str] = []
        page.on(
            "console",
            lambda message: (
                self.console_errors.append(message.text) if message.type == "error" else None
            ),
        )

    async def sign_in(self) -> None:
        await self.page.goto(f"{self.base}/")
        await self.page.fill("#email", self.actor.user.email)
        await self.page.fill("#password", PASSWORD)
        await self.submit("form[action='/signin'] button[type=submit]")

    async def submit(self, selector: str, status: int = 200) -> None:
        """Click a submit button and wait for the page it leads to."""
        async with self.page.expect_navigation() as navigation:
            await self.page.click(selector)
        response = await navigation.value
        assert response is not None
        if response.status != status:
            alert = await self.page.locator("[role=alert]").all_inner_texts()
            raise AssertionError(f"{selector}: {response.status} {alert}")

    async def switch_language(self, language: str) -> None:
        await self.page.select_option("#language-switch", language)
        await self.submit("form[action='/preferences/language'] button[type=submit]")

    async def room(self, key: str) -> None:
        await self.page.goto(f"{self.base}/incidents/{key}")

    async def shoot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        for width in (WIDE, NARROW):
            await self.page.set_viewport_size({"width": width, "height": 900})
            await self.page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        await self.page.set_viewport_size({"width": WIDE, "height": 900})


async def _people(
    browser: Browser, base: str, make_actor: MakeActor, language: str
) -> tuple[Person, Person]:
    people = []
    for ministry in ("DOE", "METI"):
        actor = await make_actor("lead", ministry, password=PASSWORD)
        context = await browser.new_context(viewport={"width": WIDE, "height": 900})
        person = Person(await context.new_page(), base, actor)
        await person.sign_in()
        if language != "en":
            await person.switch_language(language)
        people.append(person)
    return people[0], people[1]


async def carry_an_incident_to_closed(
    browser: Browser, base: str, make_actor: MakeActor, language: str
) -> None:
    doe, meti = await _people(browser, base, make_actor, language)
    # METI watches the board; DOE reports.
    await meti.page.goto(f"{base}/")
    await meti.page.evaluate("window.rrgNotReloaded = true")
    await doe.page.goto(f"{base}/incidents/new")
    title = f"Gallium export licence suspended ({language})"
    await doe.page.fill("#f-title", title)
    await doe.page.fill("#f-summary", "Exports of **gallium** need a licence from today.")
    await doe.page.select_option("#f-minerals", ["Ga", "Ge"])
    await doe.page.select_option("#f-category", "export_control")
    await doe.page.select_option("#f-tlp", "GREEN")
    await doe.page.select_option("#f-severity", "SEV2")
    await doe.submit("form.report button[type=submit]")
    key = doe.page.url.rsplit("/", 1)[1]
    assert re.fullmatch(r"RRG-\d{4}", key)

    # It appears on METI's board without a reload.
    await expect(meti.page.locator(f'[data-key="{key}"]')).to_be_visible(timeout=15_000)
    assert await meti.page.evaluate("window.rrgNotReloaded") is True
    await meti.shoot(f"{language}-board")

    # METI sits in the room with a comment half typed while DOE names its owner: the
    # owners and the timeline refresh in place; the part being typed in is left alone.
    await meti.room(key)
    await meti.page.evaluate("window.rrgNotReloaded = true")
    await meti.page.fill("#comment-body", "Draft: checking with JOGMEC")
    await doe.room(key)
    await doe.page.select_option("#owner-DOE-user", str(doe.actor.id))
    await doe.submit("#owner-DOE button[type=submit]")
    await expect(meti.page.locator("#owner-DOE")).to_contain_text(
        doe.actor.user.display_name, timeout=15_000
    )
    await expect(
        meti.page.locator('#timeline li[data-type="incident.owner_assigned"]')
    ).to_have_count(1)
    await expect(meti.page.locator("#comment-body")).to_have_value("Draft: checking with JOGMEC")
    await expect(meti.page.locator("#room-changed")).to_be_visible()
    assert await meti.page.evaluate("window.rrgNotReloaded") is True

    # Both co-leads name their owners, picked by name from the directory.
    await meti.page.fill("#comment-body", "")
    await meti.page.select_option("#owner-METI-user", str(meti.actor.id))
    await meti.submit("#owner-METI button[type=submit]")
    await doe.room(key)
    await doe.submit("button[data-move=triaged]")

    # METI proposes an action, approves it; DOE starts the response.
    await meti.room(key)
    due = datetime.now(ZoneInfo("Asia/Tokyo")) + timedelta(days=3)
    await meti.page.fill("#na-title", "Release gallium from the JOGMEC stockpile")
    await meti.page.select_option("#na-kind", "stockpile_release")
    await meti.page.select_option("#na-ministry", "METI")
    await meti.page.select_option("#na-assignee", str(meti.actor.id))
    await meti.page.fill("#na-due", due.strftime("%Y-%m-%dT%H:%M"))
    await meti.submit("#new-action button[type=submit]")
    await meti.submit("button[data-action-move=approved]")
    await doe.room(key)
    await doe.submit("button[data-move=responding]")
    await meti.room(key)
    await meti.submit("button[data-action-move=in_progress]")
    await meti.page.fill(
        "form:has(button[data-action-move=completed]) input[name=outcome]", "20 t released"
    )
    await meti.submit("button[data-action-move=completed]")

    # DOE resolves; both sign off; METI closes.
    await doe.room(key)
    await doe.page.fill("#move-resolved-summary", "Stockpile release covered the gap.")
    await doe.submit("button[data-move=resolved]")
    await doe.submit("form[action$='/signoff'] button[type=submit]")
    await meti.room(key)
    await meti.submit("form[action$='/signoff'] button[type=submit]")
    await meti.submit("button[data-move=closed]")

    # The timeline shows all of it.
    timeline = meti.page.locator("#timeline")
    await expect(timeline.locator('li[data-type="incident.status_changed"]')).to_have_count(4)
    for event, count in (
        ("incident.created", 1),
        ("incident.owner_assigned", 2),
        ("action.created", 1),
        ("action.approved", 1),
        ("action.status_changed", 3),  # approved, in progress, completed
        ("incident.signed_off", 2),
    ):
        await expect(timeline.locator(f'li[data-type="{event}"]')).to_have_count(count)
    closed = "完了" if language == "ja" else "closed"
    await expect(meti.page.locator(".room-head .status")).to_have_text(closed)
    await meti.shoot(f"{language}-room")
    for person in (doe, meti):
        assert not person.console_errors, person.console_errors


async def test_two_co_leads_carry_an_incident_to_closed(
    browser: Browser, live_server: str, make_actor: MakeActor, db: object
):
    await carry_an_incident_to_closed(browser, live_server, make_actor, "en")


async def test_the_same_in_japanese(
    browser: Browser, live_server: str, make_actor: MakeActor, db: object
):
    await carry_an_incident_to_closed(browser, live_server, make_actor, "ja")


async def test_a_form_without_its_csrf_token_is_refused(
    browser: Browser, live_server: str, make_actor: MakeActor, db: object
):
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    person = Person(await (await browser.new_context()).new_page(), live_server, actor)
    await person.sign_in()
    await person.page.goto(f"{live_server}/incidents/new")
    await person.page.fill("#f-title", "Forged")
    await person.page.evaluate(
        "document.querySelector('form.report input[name=csrf_token]').remove()"
    )
    await person.submit("form.report button[type=submit]", status=403)
    await expect(person.page.locator("[role=alert]")).to_contain_text("CSRF")
    await person.page.goto(f"{live_server}/")
    assert "Forged" not in await person.page.content()


def test_screenshots_are_kept_out_of_git():
    ignored = (REPO_ROOT / ".gitignore").read_text().split()
    assert "var/" in ignored
    assert Path("var/screenshots").parts[0] == "var"


async def test_people_are_found_by_name_as_you_type(
    browser: Browser, live_server: str, make_actor: MakeActor, db: Database
):
    lead = await make_actor("lead", "DOE", password=PASSWORD)
    named = await make_actor("responder", "METI", password=PASSWORD)
    incident = await report(db, lead)
    person = Person(await (await browser.new_context()).new_page(), live_server, lead)
    await person.sign_in()
    await person.room(incident.key)
    options = person.page.locator("#participant-user option")
    await person.page.fill("#participant-q", named.user.display_name)
    await expect(options).to_have_count(1)
    await expect(options.first).to_have_attribute("value", str(named.id))
    await person.submit("form[action$='/participants'] button[type=submit]")
    await expect(person.page.locator("#participants li").first).to_contain_text(
        named.user.display_name
    )
    assert not person.console_errors, person.console_errors


@pytest.mark.parametrize("language", ["en", "ja"])
async def test_an_admin_creates_a_user_and_edits_a_policy(
    browser: Browser, live_server: str, make_actor: MakeActor, db: Database, language: str
):
    from sqlalchemy import select

    from app.auth.models import User
    from app.escalation.models import EscalationPolicy

    actor = await make_actor("admin", "DOE", password=PASSWORD)
    admin = Person(await (await browser.new_context()).new_page(), live_server, actor)
    await admin.sign_in()
    if language != "en":
        await admin.switch_language(language)
    page = admin.page
    email = f"analyst.{language}@doe.example.org"

    # A bad address is refused beside its field; the rest of the form is kept.
    await admin.page.click("a[href='/admin/users']")
    await page.fill("#u-email", "analyst-at-doe")
    await page.fill("#u-name", "Policy Analyst")
    await page.select_option("#u-role", "responder")
    await page.fill("#u-password", "long enough password")
    await admin.submit("#new-user button[type=submit]", status=422)
    await expect(page.locator("#err-email")).to_be_visible()
    await expect(page.locator("#u-name")).to_have_value("Policy Analyst")
    await admin.shoot(f"{language}-admin-users")
    await page.fill("#u-email", email)
    await page.fill("#u-password", "long enough password")
    await admin.submit("#new-user button[type=submit]")
    await expect(page.locator("[role=status]")).to_be_visible()
    await page.uncheck("#u-active")
    await admin.submit("#edit-user button[type=submit]")
    await admin.shoot(f"{language}-admin-user")
    async with db.unit_of_work(readonly=True) as session:
        user = await session.scalar(select(User).where(User.email == email))
        assert user is not None and user.role == "responder" and not user.active

    # A policy whose level 3 comes before level 2 is refused beside that field.
    await page.goto(f"{live_server}/admin/policies/SEV4")
    await page.fill("#p-level3_after", "1")
    await admin.submit("#edit-policy button[type=submit]", status=422)
    await expect(page.locator("#err-level3_after")).to_be_visible()
    await admin.shoot(f"{language}-admin-policy")
    await page.fill("#p-level3_after", "250")
    await admin.submit("#edit-policy button[type=submit]")
    await expect(page.locator("#policy-SEV4")).to_contain_text("250")
    async with db.unit_of_work(readonly=True) as session:
        policy = await session.get(EscalationPolicy, "SEV4")
        assert policy is not None and policy.level3_after_seconds == 250 * 3600
    # The two refused forms are logged as failed loads (422); nothing else (no CSP error).
    unexpected = [e for e in admin.console_errors if "422" not in e]
    assert not unexpected and len(admin.console_errors) == 2, admin.console_errors


async def test_a_room_refreshes_in_place_and_empties_when_its_incident_goes_out_of_sight(
    browser: Browser, live_server: str, make_actor: MakeActor, db: Database
):
    import httpx

    reporter = await make_actor("responder", "DOE", password=PASSWORD)
    named = await make_actor("responder", "METI", password=PASSWORD)
    admin = await make_actor("admin", "DOE")  # reads the server's metrics
    async with httpx.AsyncClient(base_url=live_server, headers=reporter.headers) as api:
        created = await api.post(
            "/api/v1/incidents",
            json={
                "title": "Scandium cargo held",
                "minerals": ["Sc"],
                "category": "logistics_disruption",
                "tlp": "RED",
            },
        )
        assert created.status_code == 201, created.text
        red = created.json()
        added = await api.post(
            f"/api/v1/incidents/{red['id']}/participants", json={"user_id": str(named.id)}
        )
        assert added.status_code == 200
        person = Person(await (await browser.new_context()).new_page(), live_server, named)
        await sse_clients_reach(live_server, admin, 0)  # streams of earlier tests have ended
        await person.sign_in()
        await person.room(red["key"])
        await person.page.evaluate("window.rrgNotReloaded = true")
        # The room's event stream (the only one: the board's closed as the room opened) is
        # connected before anything changes; a change made before it connects is not sent.
        await sse_clients_reach(live_server, admin, 1)
        # A comment by the reporter appears without a reload.
        commented = await api.post(
            f"/api/v1/incidents/{red['id']}/comments", json={"body": "Port authority notified"}
        )
        assert commented.status_code == 201, commented.text
        await expect(person.page.locator("#room-comments")).to_contain_text(
            "Port authority notified", timeout=15_000
        )
        # Taken off the RED incident: the room empties, nothing of it stays on screen.
        removed = await api.delete(f"/api/v1/incidents/{red['id']}/participants/{named.id}")
        assert removed.status_code == 204
        await expect(person.page.locator("#room-gone")).to_be_visible(timeout=15_000)
        assert await person.page.evaluate("window.rrgNotReloaded") is True
        content = await person.page.content()
        assert "Scandium" not in content and "Port authority" not in content
        assert not person.console_errors, person.console_errors
