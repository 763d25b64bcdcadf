"""Admin pages: users, webhook subscriptions, delivery log, escalation policies."""

from __future__ import annotations

import re
import uuid
from typing import Any

from app.db import Database
from app.webhooks.models import Subscription
from tests.web.conftest import SignedIn


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
