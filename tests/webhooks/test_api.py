"""The webhooks API (SPEC §7, §8): subscriptions managed by the right people (SPEC §1), the
secret shown once and sealed at rest, bad input refused with the field, the delivery log with
its filters and cursor, test events, redelivery and recovery."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from app.db import Database
from app.webhooks.models import Delivery, Subscription
from app.webhooks.payloads import ENVELOPES, PAYLOADS, IncidentEvent
from app.webhooks.vocabulary import EVENT_TYPES
from tests.conftest import REPO_ROOT, Actor, MakeActor, assert_problem
from tests.escalation.helpers import Clock
from tests.webhooks.helpers import (
    add_partner,
    deliveries,
    emit,
    escalated,
    incident,
    subscribe,
    subscription_row,
)
from tests.webhooks.receiver import Receiver

SUBS = "/api/v1/webhooks/subscriptions"
LOG = "/api/v1/webhooks/deliveries"
URL = "https://hooks.example.test/rrg"


async def count(db: Database, model: Any) -> int:
    async with db.unit_of_work(readonly=True) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_lead_creates_reads_changes_and_deletes_a_subscription(
    app, client: httpx.AsyncClient, db: Database, make_actor: MakeActor
):
    lead = await make_actor("lead", "DOE")
    created = await client.post(
        SUBS,
        json={
            "url": URL,
            "event_types": ["incident.reported", "action.escalated", "incident.reported"],
            "min_severity": "SEV2",
            "description": "DOE operations centre",
        },
        headers=lead.headers,
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert created.headers["etag"] == '"1"'
    assert sub["ministry"] == "DOE" and sub["max_tlp"] == "GREEN" and sub["active"] is True
    assert sub["event_types"] == ["incident.reported", "action.escalated"]
    secret = sub["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24

    # Shown once: never again, and sealed in the database.
    listed = (await client.get(SUBS, headers=lead.headers)).json()["items"]
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    fetched = await client.get(f"{SUBS}/{sub['id']}", headers=lead.headers)
    assert "secret" not in fetched.json() and fetched.headers["etag"] == '"1"'
    row = await subscription_row(db, sub["id"])
    assert secret not in row.secret_ciphertext and secret[6:] not in row.secret_ciphertext
    assert app.state.webhook_box.open(row.secret_ciphertext, row.id) == secret

    url = f"{SUBS}/{sub['id']}"
    assert_problem(await client.patch(url, json={"max_tlp": "AMBER"}, headers=lead.headers), 428)
    stale = {**lead.headers, "If-Match": '"7"'}
    assert_problem(await client.patch(url, json={"max_tlp": "AMBER"}, headers=stale), 412)
    current = {**lead.headers, "If-Match": '"1"'}
    blocked = await client.patch(url, json={"url": "https://10.0.0.1/x"}, headers=current)
    assert assert_problem(blocked, 422)["errors"][0]["field"] == "url"
    cleared = await client.patch(url, json={"description": None}, headers=current)
    assert assert_problem(cleared, 422)["errors"][0]["field"] == "description"
    changed = await client.patch(
        url, json={"max_tlp": "AMBER", "min_severity": None, "event_types": []}, headers=current
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"2"'
    body = changed.json()
    assert (body["max_tlp"], body["min_severity"], body["event_types"]) == ("AMBER", None, [])
    assert body["url"] == URL and body["description"] == "DOE operations centre"

    assert (await client.delete(url, headers=lead.headers)).status_code == 204
    assert_problem(await client.get(url, headers=lead.headers), 404)
    assert await count(db, Subscription) == 0


async def test_a_subscription_is_created_once_per_key_and_its_secret_stays_sealed(
    app, client: httpx.AsyncClient, db: Database, make_actor: MakeActor
):
    from app.idempotency import IdempotencyKey

    lead = await make_actor("lead", "DOE")
    keyed = {**lead.headers, "Idempotency-Key": "subscribe-1"}
    body = {"url": URL, "event_types": ["incident.reported"]}
    first = await client.post(SUBS, json=body, headers=keyed)
    again = await client.post(SUBS, json=body, headers=keyed)
    assert first.status_code == 201, first.text
    assert again.headers.get("idempotent-replayed") == "true", again.text
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert await count(db, Subscription) == 1
    # The replay's copy of the secret is stored sealed, never in clear.
    secret = first.json()["secret"]
    async with db.unit_of_work(readonly=True) as session:
        stored = (await session.scalars(select(IdempotencyKey))).one()
    assert secret not in str(stored.response_body)
    assert stored.response_body["secret"].startswith("sealed:")

    # Once rotated, the first secret no longer signs alone: a replay does not show it.
    url = f"{SUBS}/{first.json()['id']}"
    rotated = await client.post(f"{url}/rotate-secret", headers=lead.headers)
    assert rotated.status_code == 200, rotated.text
    replay = await client.post(SUBS, json=body, headers=keyed)
    assert "rotated" in assert_problem(replay, 409)["detail"]
    assert secret not in replay.text and rotated.json()["secret"] not in replay.text
    # Deleted: the replay is a 404, and creates nothing.
    assert (await client.delete(url, headers=lead.headers)).status_code == 204
    assert_problem(await client.post(SUBS, json=body, headers=keyed), 404)
    assert await count(db, Subscription) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": URL, "event_types": ["incident.exploded"]}, "event_types.0"),
        ({"url": URL, "max_tlp": "PURPLE"}, "max_tlp"),
        ({"url": URL, "min_severity": "SEV9"}, "min_severity"),
        ({"url": URL, "ministry": "NASA"}, "ministry"),
        ({"url": URL, "colour": "blue"}, "colour"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://" + "a" * 2050 + ".test/"}, "url"),
        ({"url": "https://hooks.example.test:99999/"}, "url"),
        ({}, "url"),
    ],
)
async def test_bad_subscription_input_is_refused_with_the_field(
    client: httpx.AsyncClient, db: Database, make_actor: MakeActor, body: dict[str, Any], field: str
):
    lead = await make_actor("lead", "DOE")
    problem = assert_problem(await client.post(SUBS, json=body, headers=lead.headers), 422)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await count(db, Subscription) == 0


@pytest.fixture
async def people(db: Database, make_actor: MakeActor) -> dict[str, Actor]:
    await add_partner(db)
    return {
        f"{ministry} {role}": await make_actor(role, ministry)
        for ministry in ("DOE", "METI", "JOGMEC")
        for role in ("viewer", "responder", "lead", "admin")
    }


async def test_leads_and_admins_manage_their_own_and_co_lead_admins_also_partners(
    client: httpx.AsyncClient, people: dict[str, Actor]
):
    subs = {
        code: await subscribe(client, people[f"{code} lead"], URL, description=code)
        for code in ("DOE", "METI", "JOGMEC")
    }
    sees = {
        "DOE lead": {"DOE"},
        "DOE admin": {"DOE", "JOGMEC"},
        "METI lead": {"METI"},
        "METI admin": {"METI", "JOGMEC"},
        "JOGMEC lead": {"JOGMEC"},
        "JOGMEC admin": {"JOGMEC"},
    }
    for name, actor in people.items():
        listed = await client.get(SUBS, headers=actor.headers)
        if name not in sees:  # viewers and responders
            assert_problem(listed, 403)
            assert_problem(
                await client.get(f"{SUBS}/{subs['DOE']['id']}", headers=actor.headers), 403
            )
            continue
        assert {s["description"] for s in listed.json()["items"]} == sees[name], name
        for code, sub in subs.items():
            one = await client.get(f"{SUBS}/{sub['id']}", headers=actor.headers)
            rotate = await client.post(f"{SUBS}/{sub['id']}/rotate-secret", headers=actor.headers)
            if code in sees[name]:
                assert one.status_code == 200 and rotate.status_code == 200, (name, code)
            else:  # as if it did not exist
                assert_problem(one, 404)
                assert_problem(rotate, 404)
    # Creating for another ministry: only a co-lead admin, and only for a partner.
    for name, ministry, status in (
        ("DOE admin", "JOGMEC", 201),
        ("METI admin", "JOGMEC", 201),
        ("DOE admin", "METI", 403),
        ("DOE lead", "JOGMEC", 403),
        ("JOGMEC admin", "DOE", 403),
        ("DOE responder", "DOE", 403),
    ):
        made = await client.post(
            SUBS, json={"url": URL, "ministry": ministry}, headers=people[name].headers
        )
        assert made.status_code == status, (name, ministry, made.text)
        if status == 201:
            assert made.json()["ministry"] == ministry


async def test_a_test_event_is_delivered_and_redelivery_keeps_the_webhook_id(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher,
):
    lead, meti = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    sub = await subscribe(client, lead, receiver.url("/t"), event_types=["incident.reported"])
    receiver.trust("/t", sub["secret"])
    tested = await client.post(f"{SUBS}/{sub['id']}/test", headers=lead.headers)
    assert tested.status_code == 202, tested.text
    delivery = tested.json()
    assert (delivery["event_type"], delivery["status"], delivery["attempts"]) == (
        "webhook.test",
        "pending",
        [],
    )
    assert await dispatcher.drain() == 1
    (first,) = receiver.at("/t")
    assert first.verified_by == ["current"]
    assert first.msg_id == delivery["webhook_id"]
    assert first.json()["data"]["subscription_id"] == sub["id"]

    url = f"{LOG}/{delivery['id']}"
    detail = (await client.get(url, headers=lead.headers)).json()
    assert detail["status"] == "delivered" and len(detail["attempts"]) == 1
    attempt = detail["attempts"][0]
    assert (attempt["number"], attempt["outcome"], attempt["status_code"]) == (1, "delivered", 200)
    assert attempt["response_excerpt"] == "ok" and attempt["latency_ms"] >= 0
    assert_problem(await client.get(url, headers=meti.headers), 404)
    assert_problem(await client.post(f"{url}/redeliver", headers=meti.headers), 404)

    again = await client.post(f"{url}/redeliver", headers=lead.headers)
    assert again.status_code == 202 and again.json()["status"] == "pending"
    assert_problem(await client.post(f"{url}/redeliver", headers=lead.headers), 409)
    clock.advance(timedelta(minutes=1))
    assert await dispatcher.drain() == 1
    second = receiver.at("/t")[1]
    assert second.msg_id == first.msg_id and second.timestamp > first.timestamp
    assert len((await client.get(url, headers=lead.headers)).json()["attempts"]) == 2


async def test_recover_requeues_the_failed_deliveries_since_a_time(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher,
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url("/r"))
    found = await incident(client, lead)
    times = []
    for level in range(3):
        times.append(clock.at)
        await emit(db, escalated(found["id"], level))
        clock.advance(timedelta(hours=1))
    async with db.unit_of_work() as session:  # as if their schedules had run out
        await session.execute(update(Delivery).values(status="failed", next_attempt_at=None))
    url = f"{SUBS}/{sub['id']}/recover"
    naive = await client.post(url, json={"since": "2030-01-01T00:00:00"}, headers=lead.headers)
    assert assert_problem(naive, 422)["errors"][0]["field"] == "since"
    recovered = await client.post(url, json={"since": times[1].isoformat()}, headers=lead.headers)
    assert recovered.status_code == 200 and recovered.json() == {"requeued": 2}
    assert await dispatcher.drain() == 2
    rows = await deliveries(db)
    assert [r.status for r in rows] == ["failed", "delivered", "delivered"]
    assert sorted(r.msg_id for r in receiver.at("/r")) == sorted(
        f"msg_{r.id.hex}" for r in rows[1:]
    )
    paused = await client.patch(
        f"{SUBS}/{sub['id']}", json={"active": False}, headers={**lead.headers, "If-Match": '"1"'}
    )
    assert paused.status_code == 200
    assert_problem(
        await client.post(url, json={"since": times[0].isoformat()}, headers=lead.headers), 409
    )
    assert_problem(await client.post(f"{SUBS}/{sub['id']}/test", headers=lead.headers), 409)


async def test_the_delivery_log_filters_and_pages_newest_first(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
):
    lead, meti = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    a = await subscribe(client, lead, receiver.url("/a"))
    b = await subscribe(client, lead, receiver.url("/b"), event_types=["incident.escalated"])
    await subscribe(client, meti, receiver.url("/m"))  # not in the DOE lead's log
    found = await incident(client, lead)
    start = clock.at
    for level in range(6):
        clock.advance(timedelta(minutes=10))
        await emit(db, escalated(found["id"], level))
    async with db.unit_of_work() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.subscription_id == uuid.UUID(a["id"]))
            .values(status="failed")
        )
    everything = [d for d in await deliveries(db) if str(d.subscription_id) in (a["id"], b["id"])]
    newest_first = sorted(everything, key=lambda d: (d.created_at, d.id), reverse=True)

    async def walk(**params: Any) -> list[str]:
        seen, cursor = [], None
        while True:
            query = {**params, "limit": 4, **({"cursor": cursor} if cursor else {})}
            page = await client.get(LOG, params=query, headers=lead.headers)
            assert page.status_code == 200, page.text
            seen += [d["id"] for d in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return seen

    assert await walk() == [str(d.id) for d in newest_first]
    assert await walk(subscription_id=b["id"]) == [
        str(d.id) for d in newest_first if str(d.subscription_id) == b["id"]
    ]
    assert await walk(status="failed") == [str(d.id) for d in newest_first if d.status == "failed"]
    since, until = start + timedelta(minutes=20), start + timedelta(minutes=50)
    assert await walk(since=since.isoformat(), until=until.isoformat()) == [
        str(d.id) for d in newest_first if since <= d.created_at < until
    ]
    assert await walk(event_type="action.escalated") == []
    for bad in (
        {"since": "2030-01-07T09:00:00"},
        {"status": "lost"},
        {"cursor": "!!"},
        {"limit": 0},
    ):
        assert_problem(await client.get(LOG, params=bad, headers=lead.headers), 422)
    viewer = await make_actor("viewer", "DOE")
    assert_problem(await client.get(LOG, headers=viewer.headers), 403)


def test_every_event_type_is_published_under_openapi_webhooks():
    import json

    spec = json.loads((REPO_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8"))
    assert spec["openapi"].startswith("3.1")
    assert list(spec["webhooks"]) == list(EVENT_TYPES)
    schemas = spec["components"]["schemas"]
    for event_type, envelope in ENVELOPES.items():
        operation = spec["webhooks"][event_type]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        assert schema["properties"]["type"]["const"] == event_type
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} == {
            p["name"] for p in operation["parameters"]
        }
        data = json.dumps(schema["properties"]["data"])
        assert PAYLOADS[event_type].__name__ in data
        assert ("Redacted" in data) == issubclass(PAYLOADS[event_type], IncidentEvent)
        assert envelope.__name__ == ref.rsplit("/", 1)[1]
