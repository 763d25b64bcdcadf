"""Sign-in, sessions, CSRF, rate limits, security headers, language (SPEC §9)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, update

from app.auth.models import User
from app.db import Database
from app.web.models import WebSession
from app.web.security import CONTENT_SECURITY_POLICY
from tests.conftest import MakeActor
from tests.web.conftest import PASSWORD, SignedIn, csrf_of, sign_in


async def test_pages_need_a_session_and_sign_in_opens_one(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    page = await client.get("/incidents/new")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=%2Fincidents%2Fnew"
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    response = await sign_in(client, actor.user.email.upper())
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "rrg_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    token = client.cookies["rrg_session"]
    async with db.unit_of_work(readonly=True) as session:
        stored = (await session.scalars(select(WebSession.token_hash))).all()
    assert stored and token not in stored  # only its hash is kept
    assert (await client.get("/")).status_code == 200


async def test_the_cookie_is_secure_over_https(app: Any, make_actor: MakeActor):
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://rrg.test") as client:
        response = await sign_in(client, actor.user.email)
        assert "Secure" in response.headers["set-cookie"]
        assert "strict-transport-security" in (await client.get("/")).headers


async def test_wrong_password_is_refused_without_saying_which(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    wrong = await sign_in(client, actor.user.email, "not the password")
    unknown = await sign_in(client, "nobody@doe.example.org", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "The email or password is not right." in wrong.text
    assert "rrg_session" not in client.cookies


async def test_sign_in_is_limited_per_account(
    client: httpx.AsyncClient, make_actor: MakeActor, settings: Any
):
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    for _ in range(settings.signin_max_failures_per_account):
        assert (await sign_in(client, actor.user.email, "guess")).status_code == 401
    # Now even the right password waits.
    limited = await sign_in(client, actor.user.email)
    assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text


async def test_sign_in_is_limited_per_address(
    client: httpx.AsyncClient, make_actor: MakeActor, settings: Any
):
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    for n in range(settings.signin_max_failures_per_address):
        await sign_in(client, f"someone{n}@example.org", "guess")
    assert (await sign_in(client, actor.user.email)).status_code == 429


async def test_sign_out_ends_the_session_everywhere(signed_in: SignedIn):
    browser = await signed_in("lead", "DOE")
    token = browser.client.cookies["rrg_session"]
    assert (await browser.post("/signout")).status_code == 303
    browser.client.cookies.set("rrg_session", token)  # a copied cookie is dead too
    assert (await browser.get("/")).status_code == 303


async def test_a_deactivated_user_is_signed_out(signed_in: SignedIn, db: Database):
    browser = await signed_in("lead", "DOE")
    async with db.unit_of_work() as session:
        await session.execute(update(User).where(User.id == browser.actor.id).values(active=False))
    assert (await browser.get("/")).status_code == 303


async def test_a_post_without_the_csrf_token_is_refused(signed_in: SignedIn):
    browser = await signed_in("lead", "DOE")
    missing = await browser.client.post("/preferences/language", data={"language": "ja"})
    assert missing.status_code == 403
    forged = await browser.client.post(
        "/preferences/language", data={"language": "ja", "csrf_token": "0" * 64}
    )
    assert forged.status_code == 403
    cross_site = await browser.post(
        "/preferences/language", {"language": "ja"}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403
    fetch_cross = await browser.post(
        "/preferences/language", {"language": "ja"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert fetch_cross.status_code == 403
    # The header form (htmx) works like the field.
    header = await browser.client.post(
        "/preferences/language", data={"language": "ja"}, headers={"X-CSRF-Token": browser.csrf}
    )
    assert header.status_code == 303


async def test_sign_in_itself_needs_the_pre_session_token(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    await client.get("/signin")
    refused = await client.post("/signin", data={"email": actor.user.email, "password": PASSWORD})
    assert refused.status_code == 403


async def test_next_never_leaves_the_site(client: httpx.AsyncClient, make_actor: MakeActor):
    actor = await make_actor("lead", "DOE", password=PASSWORD)
    page = await client.get("/signin?next=//evil.example/x")
    response = await client.post(
        "/signin",
        data={
            "email": actor.user.email,
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "//evil.example/x",
        },
    )
    assert response.headers["location"] == "/"


async def test_every_page_has_the_security_headers_and_the_api_keeps_its_own(signed_in: SignedIn):
    browser = await signed_in("lead", "DOE")
    for path in (
        "/",
        "/signin",
        "/incidents/new",
        "/actions/mine",
        "/notifications",
        "/static/app.js",
    ):
        response = await browser.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
    assert (
        "unsafe" not in CONTENT_SECURITY_POLICY and "script-src 'self'" in CONTENT_SECURITY_POLICY
    )
    page = (await browser.get("/")).text
    assert "<script>" not in page and " style=" not in page and "onclick" not in page
    assert '"allowEval": false' in page and '"includeIndicatorStyles": false' in page
    api = await browser.get("/api/v1/minerals")
    assert "content-security-policy" not in api.headers


async def test_language_is_remembered_per_user(signed_in: SignedIn, db: Database):
    browser = await signed_in("lead", "DOE")
    assert '<html lang="en">' in (await browser.get("/")).text
    switched = await browser.post(
        "/preferences/language", {"language": "ja", "next": "/actions/mine"}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/actions/mine"
    page = (await browser.get("/")).text
    assert '<html lang="ja">' in page and "トリアージ ボード" in page and "サインアウト" in page
    async with db.unit_of_work(readonly=True) as session:
        assert (await session.get(User, browser.actor.id, populate_existing=True)).language == "ja"
    bad = await browser.post("/preferences/language", {"language": "fr"})
    assert bad.status_code == 422
