"""GET /metrics: Prometheus text from prometheus-client, for admins and the scrape token;
requests by route template and status, the pool, sweeps, deliveries and the outbox lag."""

from __future__ import annotations

from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.db import Database
from app.webhooks.dispatcher import Dispatcher
from app.worker import run_sweep
from tests.conftest import MakeActor, assert_problem
from tests.escalation.helpers import Clock
from tests.ops.conftest import METRICS_TOKEN
from tests.webhooks.helpers import emit, escalated, incident, subscribe
from tests.webhooks.receiver import Receiver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, token: str = METRICS_TOKEN) -> Samples:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_need_an_admin_or_the_scrape_token(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    assert_problem(await client.get("/metrics"), 401)
    assert_problem(
        await client.get("/metrics", headers={"Authorization": "Bearer not-the-token"}), 401
    )
    lead = await make_actor("lead", "DOE")
    assert_problem(await client.get("/metrics", headers=lead.headers), 403)
    admin = await make_actor("admin", "METI")
    assert (await client.get("/metrics", headers=admin.headers)).status_code == 200
    assert (
        "rrg_http_request_duration_seconds"
        in (await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    )


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead", "DOE")
    route = "/api/v1/incidents/{id_or_key}"
    before = await scrape(client)
    created = await incident(client, lead)
    for key in (created["key"], created["id"], "RRG-9999"):
        await client.get(f"/api/v1/incidents/{key}", headers=lead.headers)
    await client.get("/no/such/path/42")
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    count = "rrg_http_request_duration_seconds_count"
    assert delta(count, method="GET", route=route, status="200") == 2
    assert delta(count, method="GET", route=route, status="404") == 1
    assert delta(count, method="POST", route="/api/v1/incidents", status="201") == 1
    assert delta(count, method="GET", route="<unmatched>", status="404") == 1
    # One series per template: no label carries an incident's key or id.
    assert not any(created["key"] in str(labels) for _, labels in after)
    assert value(after, "rrg_db_pool_connections_limit") > 0
    assert value(after, "rrg_db_pool_connections_in_use") >= 0


async def test_outbox_lag_deliveries_and_dispatch_lag(
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    dispatcher: Dispatcher,
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url("/hook"))
    receiver.trust("/hook", sub["secret"])
    found = await incident(client, lead)
    await emit(db, escalated(found["id"]), escalated(found["id"], level=2))
    clock.advance(timedelta(seconds=90))
    waiting = await scrape(client)
    assert value(waiting, "rrg_metrics_database_up") == 1
    assert value(waiting, "rrg_outbox_pending_deliveries", state="due") == 2
    assert value(waiting, "rrg_outbox_lag_seconds") == 90
    assert value(waiting, "rrg_webhook_dispatcher_lag_seconds") == 90

    assert await dispatcher.drain() == 2
    done = await scrape(client)
    assert value(done, "rrg_outbox_pending_deliveries", state="due") == 0
    assert value(done, "rrg_outbox_lag_seconds") == 0

    def delta(name: str, **labels: str) -> float:
        return value(done, name, **labels) - value(waiting, name, **labels)

    assert delta("rrg_webhook_deliveries_total", result="delivered") == 2
    assert delta("rrg_webhook_attempts_total", outcome="delivered") == 2
    assert delta("rrg_webhook_attempt_duration_seconds_count", outcome="delivered") == 2
    assert delta("rrg_webhook_dispatch_lag_seconds_count") == 2
    # The histogram's sum is a float kept over the whole session: its difference may fall
    # short of 180 by a rounding error.
    assert delta("rrg_webhook_dispatch_lag_seconds_sum") >= 2 * 90 - 1e-6


async def test_sweeps_are_timed_and_escalations_counted_by_level(
    client: httpx.AsyncClient, db: Database, clock: Clock, make_actor: MakeActor
):
    lead = await make_actor("lead", "DOE")
    await make_actor("lead", "METI")
    await incident(client, lead, severity="SEV1")
    before = await scrape(client)
    clock.advance(timedelta(hours=3))  # SEV1 triage: 1 h, co-chairs at twice that
    await run_sweep(db)
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("rrg_sweep_duration_seconds_count") == 1
    assert delta("rrg_escalations_total", item_type="triage", level="1") == 1
    assert delta("rrg_escalations_total", item_type="triage", level="2") == 1
    assert delta("rrg_sweeps_failed_total") == 0
