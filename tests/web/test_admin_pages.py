"""Admin pages: users, webhook subscriptions, delivery log, escalation policies."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.auth.models import User
from app.db import Database
from app.escalation.models import EscalationPolicy
from app.webhooks.models import Subscription
from tests.web.conftest import PASSWORD, SignedIn, sign_in


async def test_a_lead_creates_a_subscription_sees_the_secret_once_and_works_it(
    signed_in: SignedIn, db: Database, app: Any
):
    from app.webhooks.egress import EgressPolicy
    from app.webhooks.service import Egress

    app.state.webhook_egress = Egress(
        EgressPolicy.of(["127.0.0.1"]), app.state.webhook_egress.resolve
    )
    lead = await signed_in("lead", "METI")
    refused = await lead.post("/admin/webhooks", {"url": "ftp://nowhere", "max_tlp": "GREEN"})
    assert refused.status_code == 422 and 'class="field-error"' in refused.text
    created = await lead.post(
        "/admin/webhooks",
        {"url": "http://127.0.0.1:9/hook", "description": "METI systems", "max_tlp": "AMBER"},
    )
    assert created.status_code == 200, created.text[:2000]
    assert created.headers["cache-control"] == "no-store"
    secret = re.search(r"<code>(whsec_[^<]+)</code>", created.text).group(1)
    listing = await lead.get("/admin/webhooks")
    assert "METI systems" in listing.text and secret not in listing.text  # shown once
    sub_id = re.search(r'id="sub-([0-9a-f-]+)"', listing.text).group(1)
    rotated = await lead.post(f"/admin/webhooks/{sub_id}/rotate")
    new_secret = re.search(r"<code>(whsec_[^<]+)</code>", rotated.text).group(1)
    assert new_secret != secret
    tested = await lead.post(f"/admin/webhooks/{sub_id}/test")
    assert tested.status_code == 303
    log = (await lead.get(tested.headers["location"])).text
    assert "webhook.test" in log
    delivery_id = re.search(r'href="/admin/deliveries/([0-9a-f-]+)"', log).group(1)
    detail = await lead.get(f"/admin/deliveries/{delivery_id}")
    assert detail.status_code == 200 and "pending" in detail.text
    # Another ministry's lead cannot see it at all.
    other = await signed_in("lead", "DOE")
    assert (await other.get(f"/admin/webhooks/{sub_id}/deliveries")).status_code == 404
    assert (await other.get(f"/admin/deliveries/{delivery_id}")).status_code == 404
    assert "METI systems" not in (await other.get("/admin/webhooks")).text
    async with db.unit_of_work(readonly=True) as session:
        assert await session.get(Subscription, uuid.UUID(sub_id)) is not None


async def test_roles_on_the_admin_pages(signed_in: SignedIn):
    responder = await signed_in("responder", "DOE")
    lead = await signed_in("lead", "DOE")
    admin = await signed_in("admin", "DOE")
    assert (await responder.get("/admin/webhooks")).status_code == 403
    assert (await lead.get("/admin/users")).status_code == 403
    users = await admin.get("/admin/users")
    assert users.status_code == 200 and lead.actor.user.email in users.text
    policies = await admin.get("/admin/policies")
    assert policies.status_code == 200 and "SEV1" in policies.text
    assert (
        'href="/admin/users"' in users.text
        and 'href="/admin/users"' not in (await lead.get("/")).text
    )


# --- users ------------------------------------------------------------------------------


async def _partner(db: Database) -> None:
    from app.ministries.schemas import MinistryCreate
    from app.ministries.service import create_partner

    async with db.unit_of_work() as session:
        await create_partner(
            session,
            MinistryCreate(code="JOGMEC", name="JOGMEC", country="JP", timezone="Asia/Tokyo"),
            by=None,
        )


async def _user(db: Database, email: str) -> User | None:
    async with db.unit_of_work(readonly=True) as session:
        return await session.scalar(select(User).where(User.email == email))


async def test_an_admin_creates_a_user_with_a_password_who_can_sign_in(
    signed_in: SignedIn, db: Database, app: Any
):
    await _partner(db)
    admin = await signed_in("admin", "DOE")
    page = (await admin.get("/admin/users")).text
    # The form offers the ministries this admin manages (own and partners), not METI.
    assert '<option value="DOE"' in page and '<option value="JOGMEC"' in page
    assert '<option value="METI"' not in page
    created = await admin.post(
        "/admin/users",
        {
            "email": "New.Analyst@doe.example.org",
            "display_name": "New Analyst",
            "ministry": "JOGMEC",
            "role": "responder",
            "language": "ja",
            "password": PASSWORD,
            "co_chair": "1",
        },
    )
    assert created.status_code == 303, created.text[:2000]
    user = await _user(db, "new.analyst@doe.example.org")
    assert user is not None and user.role == "responder" and user.ministry.code == "JOGMEC"
    assert user.co_chair and user.timezone == "Asia/Tokyo" and user.language == "ja"
    assert created.headers["location"] == f"/admin/users/{user.id}?saved=1"
    assert "New Analyst" in (await admin.get("/admin/users")).text
    # The password set here is the one they sign in with.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rrg.test") as client:
        assert (await sign_in(client, "new.analyst@doe.example.org")).status_code == 303


async def test_user_form_errors_are_shown_by_field_and_nothing_is_created(
    signed_in: SignedIn, db: Database
):
    admin = await signed_in("admin", "METI")
    refused = await admin.post(
        "/admin/users",
        {
            "email": "not-an-address",
            "display_name": "",
            "ministry": "METI",
            "role": "viewer",
            "password": "short",
            "timezone": "Mars/Olympus",
        },
    )
    assert refused.status_code == 422
    errors = dict(
        re.findall(r'<p class="field-error" id="err-([a-z_]+)">([^<]+)</p>', refused.text)
    )
    assert errors == {
        "email": "is not a valid email address",
        "display_name": "required",
        "password": "is too short",
        "timezone": "not an IANA time zone",
    }
    assert "short" not in re.findall(r'name="password"[^>]*>', refused.text)[0]
    assert await _user(db, "not-an-address") is None
    # A taken email is named on its field, and nothing changes.
    taken = await admin.post(
        "/admin/users",
        {"email": admin.actor.user.email, "display_name": "Dup", "ministry": "METI"},
    )
    assert taken.status_code == 409 and 'id="err-email"' in taken.text
    # Japanese readers get the reasons in Japanese.
    await admin.post("/preferences/language", {"language": "ja", "next": "/"})
    ja = await admin.post("/admin/users", {"email": "x", "display_name": "X", "ministry": "METI"})
    assert ja.status_code == 422 and "有効なメールアドレスではありません" in ja.text


async def test_user_scope_follows_the_api(signed_in: SignedIn, db: Database):
    await _partner(db)
    doe_admin = await signed_in("admin", "DOE")
    meti_admin = await signed_in("admin", "METI")
    partner_admin = await signed_in("admin", "JOGMEC")
    lead = await signed_in("lead", "DOE")
    meti_user = meti_admin.actor.user
    # Not an admin: 403 on every user page and post, and nothing is created.
    assert (await lead.get("/admin/users")).status_code == 403
    assert (await lead.get(f"/admin/users/{lead.actor.user.id}")).status_code == 403
    posted = await lead.post(
        "/admin/users", {"email": "x@doe.example.org", "display_name": "X", "ministry": "DOE"}
    )
    assert posted.status_code == 403 and await _user(db, "x@doe.example.org") is None
    # Another co-lead ministry's user: seen in the directory, not managed.
    assert (await doe_admin.get(f"/admin/users/{meti_user.id}")).status_code == 403
    renamed = await doe_admin.post(
        f"/admin/users/{meti_user.id}",
        {"display_name": "Renamed", "role": "viewer", "language": "en", "timezone": "UTC"},
    )
    assert renamed.status_code == 403
    assert (await _user(db, meti_user.email)).display_name == meti_user.display_name
    # A ministry the admin does not manage, and a role above their own.
    other = await partner_admin.post(
        "/admin/users", {"email": "y@x.example.org", "display_name": "Y", "ministry": "DOE"}
    )
    assert other.status_code == 403 and await _user(db, "y@x.example.org") is None
    # The partner admin's form offers no co-chair box; a crafted one is refused.
    assert 'name="co_chair"' not in (await partner_admin.get("/admin/users")).text
    crafted = await partner_admin.post(
        "/admin/users",
        {"email": "z@x.example.org", "display_name": "Z", "ministry": "JOGMEC", "role": "lead"},
    )
    assert crafted.status_code == 303  # no co_chair field sent: allowed
    assert (await _user(db, "z@x.example.org")).co_chair is False
    # Unknown user: 404; a malformed id: a page, not JSON.
    assert (await doe_admin.get(f"/admin/users/{uuid.uuid4()}")).status_code == 404


async def test_an_admin_edits_a_user_and_resets_the_password(
    signed_in: SignedIn, db: Database, app: Any
):
    admin = await signed_in("admin", "DOE")
    responder = await signed_in("responder", "DOE")
    target = responder.actor.user
    form = (await admin.get(f"/admin/users/{target.id}")).text
    assert target.email in form and 'name="email"' not in form  # email is not editable
    refused = await admin.post(
        f"/admin/users/{target.id}",
        {"display_name": "", "role": "lead", "language": "en", "timezone": "UTC", "active": "1"},
    )
    assert refused.status_code == 422 and 'id="err-display_name"' in refused.text
    assert (await _user(db, target.email)).role == "responder"  # nothing changed
    saved = await admin.post(
        f"/admin/users/{target.id}",
        {
            "display_name": "Renamed Responder",
            "role": "lead",
            "language": "ja",
            "timezone": "Asia/Tokyo",
            "password": "a brand new password",
            # active unchecked: the account is deactivated
        },
    )
    assert saved.status_code == 303
    after = await _user(db, target.email)
    assert (after.display_name, after.role, after.language, after.timezone, after.active) == (
        "Renamed Responder",
        "lead",
        "ja",
        "Asia/Tokyo",
        False,
    )
    assert "Saved." in (await admin.get(saved.headers["location"])).text
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rrg.test") as client:
        # Inactive: refused; active again with the new password: let in.
        assert (await sign_in(client, target.email, "a brand new password")).status_code != 303
        await admin.post(
            f"/admin/users/{target.id}",
            {
                "display_name": "Renamed Responder",
                "role": "lead",
                "language": "ja",
                "timezone": "Asia/Tokyo",
                "active": "1",
            },
        )
        assert (await sign_in(client, target.email, PASSWORD)).status_code != 303
        assert (await sign_in(client, target.email, "a brand new password")).status_code == 303


async def test_user_forms_refuse_a_post_without_csrf(signed_in: SignedIn, db: Database):
    admin = await signed_in("admin", "DOE")
    refused = await admin.client.post(
        "/admin/users", data={"email": "c@doe.example.org", "display_name": "C", "ministry": "DOE"}
    )
    assert refused.status_code == 403 and await _user(db, "c@doe.example.org") is None
    target = admin.actor.user
    refused = await admin.client.post(f"/admin/users/{target.id}", data={"display_name": "C"})
    assert refused.status_code == 403
    refused = await admin.client.post("/admin/policies/SEV1", data={"triage_within": "2"})
    assert refused.status_code == 403


# --- escalation policies ----------------------------------------------------------------


async def _policy(db: Database, severity: str) -> EscalationPolicy:
    async with db.unit_of_work(readonly=True) as session:
        row = await session.get(EscalationPolicy, severity)
        assert row is not None
        return row


POLICY_FORM = {
    "triage_within": "1.5",
    "level2_after": "3",
    "level3_after": "8",
    "update_every": "12",
}


async def test_a_co_lead_admin_edits_a_policy(signed_in: SignedIn, db: Database):
    admin = await signed_in("admin", "METI")
    listing = (await admin.get("/admin/policies")).text
    assert 'href="/admin/policies/SEV1"' in listing
    form = (await admin.get("/admin/policies/SEV1")).text
    assert 'name="triage_within" inputmode="decimal" value="1"' in form  # SPEC: 1 h
    saved = await admin.post("/admin/policies/SEV1", POLICY_FORM)
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/policies?saved=SEV1"
    row = await _policy(db, "SEV1")
    assert (
        row.triage_within_seconds,
        row.level2_after_seconds,
        row.level3_after_seconds,
        row.update_every_seconds,
    ) == (5400, 10800, 28800, 43200)
    assert row.updated_by_id == admin.actor.user.id
    assert "Saved." in (await admin.get(saved.headers["location"])).text


@pytest.mark.parametrize(
    ("changed", "field", "reason"),
    [
        ({"level3_after": "2"}, "level3_after", "must be longer than level 2"),
        ({"triage_within": "0.001"}, "triage_within", "must be a whole number of minutes"),
        (
            {"update_every": "9000"},
            "update_every",
            "must be at least one minute and at most one year",
        ),
        ({"level2_after": "0"}, "level2_after", "must be at least one minute and at most one year"),
        ({"triage_within": "soon"}, "triage_within", "must be a number of hours"),
        ({"triage_within": "1e400"}, "triage_within", "must be a number of hours"),
        ({"update_every": ""}, "update_every", "required"),
    ],
)
async def test_policy_errors_are_shown_beside_the_field_and_nothing_changes(
    signed_in: SignedIn, db: Database, changed: dict[str, str], field: str, reason: str
):
    admin = await signed_in("admin", "DOE")
    before = await _policy(db, "SEV2")
    refused = await admin.post("/admin/policies/SEV2", {**POLICY_FORM, **changed})
    assert refused.status_code == 422
    errors = dict(
        re.findall(r'<p class="field-error" id="err-([a-z0-9_]+)">([^<]+)</p>', refused.text)
    )
    assert errors == {field: reason}
    assert f'value="{next(iter(changed.values()))}"' in refused.text  # the input is kept
    after = await _policy(db, "SEV2")
    assert (after.triage_within_seconds, after.updated_at) == (
        before.triage_within_seconds,
        before.updated_at,
    )


async def test_only_co_lead_admins_edit_policies(signed_in: SignedIn, db: Database):
    await _partner(db)
    partner_admin = await signed_in("admin", "JOGMEC")
    lead = await signed_in("lead", "DOE")
    assert (await partner_admin.get("/admin/policies")).status_code == 200
    assert 'href="/admin/policies/SEV1"' not in (await partner_admin.get("/admin/policies")).text
    assert (await partner_admin.get("/admin/policies/SEV1")).status_code == 403
    assert (await partner_admin.post("/admin/policies/SEV1", POLICY_FORM)).status_code == 403
    assert 'href="/admin/policies/SEV1"' not in (await lead.get("/admin/policies")).text
    assert (await lead.get("/admin/policies/SEV1")).status_code == 403
    assert (await lead.post("/admin/policies/SEV1", POLICY_FORM)).status_code == 403
    assert (await _policy(db, "SEV1")).triage_within_seconds == 3600
