"""The webhook dispatcher (SPEC §7): claims due deliveries, sends them, records the outcome.

- Claims: due pending rows, oldest first, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (several
  dispatchers share the work; SQLite serves one process). A claim is a lease: the row's
  ``next_attempt_at`` moves to the lease's expiry and it gets a lease token, so a dispatcher
  that dies mid-send leaves rows that fall due again when the lease runs out. The claim reads
  the partial index of pending rows, so its cost grows with the due work, not the table.
- Sending: one shared ``httpx.AsyncClient`` (vetted connections, no redirects, no proxies
  from the environment, timeouts), bounded concurrency overall and per subscription, the
  response body kept up to 4 KiB. Only 2xx succeeds.
- Outcomes are written in small batches (one transaction for many), conditional on the
  lease token: a stale dispatcher's outcome is logged as an attempt but changes nothing.
- Retries follow RETRY_SCHEDULE with ±20% jitter; a later Retry-After wins; 410 disables the
  subscription; a subscription failing for 5 days is disabled.
- It wakes within a second of a commit that queued deliveries: an in-process signal, and
  ``LISTEN rrg_events`` on a dedicated PostgreSQL connection (reconnected if it drops); a
  poll every RRG_WEBHOOK_POLL_SECONDS covers the rest (retries falling due).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy import bindparam, func, insert, literal_column, select, update
from sqlalchemy.engine import make_url

from app import clock, metrics
from app import signals as app_signals
from app.config import Settings
from app.db import Database, table_of
from app.events import Event, emit_many
from app.ministries.models import Ministry
from app.models_base import new_id
from app.outbox.models import OutboxEvent
from app.timeline.service import SYSTEM
from app.webhooks import service, signals
from app.webhooks.egress import EgressPolicy, EgressRefused, build_client
from app.webhooks.models import Attempt, Delivery, Subscription, webhook_id
from app.webhooks.payloads import Snapshot, build_data, shown_in_full
from app.webhooks.secrets import SecretBox, SecretUnavailable
from app.webhooks.signing import signature_header
from app.webhooks.vocabulary import (
    FAILING_DISABLES_AFTER,
    JITTER,
    MAX_RETRY_AFTER,
    RESPONSE_EXCERPT_BYTES,
    RETRY_SCHEDULE,
)

logger = logging.getLogger("rrg.webhooks")

USER_AGENT = "rrg-webhooks/1.0"
WRITE_BATCH = 500
WRITE_LINGER = 0.01  # seconds an outcome may wait for others to share its transaction
LISTEN_HEALTH_CHECK = 30.0
RECONNECT_DELAY = 1.0
MIN_WAIT = 0.05
# The pending-rows predicate as a constant, so it matches the partial index even in the
# generic plan of a prepared statement.
IS_PENDING = Delivery.status == literal_column("'pending'")
OUTCOME_COLUMNS = (
    "status",
    "tries",
    "attempt_count",
    "next_attempt_at",
    "finished_at",
    "last_attempt_at",
    "last_status_code",
    "last_error",
)


@dataclass
class Claimed:
    """A leased delivery, ready to send."""

    id: uuid.UUID
    lease: uuid.UUID
    subscription_id: uuid.UUID
    url: str
    secrets: tuple[str, ...]
    body: bytes
    tries: int
    attempt_count: int
    event_type: str = ""
    incident_id: uuid.UUID | None = None
    problem: str | None = None  # why it cannot be sent (e.g. its secret does not open)
    event_at: datetime | None = None  # when the event committed (for the dispatch lag)


@dataclass
class Outcome:
    claimed: Claimed
    at: datetime
    outcome: str  # AttemptOutcome
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    excerpt: str | None = None
    retry_after: timedelta | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"


def retry_delay(tries: int, retry_after: timedelta | None = None) -> timedelta | None:
    """The wait before the next attempt after ``tries`` failed ones in this schedule, or
    None when the schedule is exhausted. A longer Retry-After wins (up to a cap)."""
    if tries >= len(RETRY_SCHEDULE):
        return None
    delay = RETRY_SCHEDULE[tries] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After as seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def _excerpt(raw: bytes) -> str | None:
    return raw[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace") if raw else None


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Dispatcher:
    db: Database
    box: SecretBox
    client: httpx.AsyncClient
    timeout: float = 10.0
    lease: timedelta = timedelta(seconds=60)
    max_in_flight: int = 64
    per_subscription: int = 16
    poll: float = 1.0
    listen_url: str | None = None  # PostgreSQL: LISTEN for commits in other processes

    _inflight: dict[uuid.UUID, asyncio.Task[None]] = field(default_factory=dict, repr=False)
    _per_sub: Counter[uuid.UUID] = field(default_factory=Counter, repr=False)
    _results: asyncio.Queue[Outcome] = field(default_factory=asyncio.Queue, repr=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _slot: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _stopping: bool = False
    _completed: int = 0  # sends finished since the last claim
    _refill: int = 1  # ... worth a new claim: a quarter of those in flight
    _runner: asyncio.Task[None] | None = None
    _writer: asyncio.Task[None] | None = None
    _listener: asyncio.Task[None] | None = None
    listening: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> Dispatcher:
        listen_url = None
        if db.dialect == "postgresql":
            listen_url = (
                make_url(settings.database_url)
                .set(drivername="postgresql")
                .render_as_string(hide_password=False)
            )
        return cls(
            db=db,
            box=SecretBox.from_settings(settings),
            client=client
            or build_client(
                EgressPolicy.from_settings(settings),
                timeout=settings.webhook_timeout_seconds,
                max_connections=settings.webhook_concurrency,
            ),
            timeout=settings.webhook_timeout_seconds,
            lease=timedelta(seconds=settings.webhook_lease_seconds),
            max_in_flight=settings.webhook_concurrency,
            per_subscription=settings.webhook_concurrency_per_subscription,
            poll=settings.webhook_poll_seconds,
            listen_url=listen_url,
        )

    # --- claiming --------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries, within each subscription's free slots."""
        return (await self._claim(limit))[0]

    async def _claim(self, limit: int) -> tuple[list[Claimed], bool]:
        """The leased deliveries, and whether due work was left (for lack of slots)."""
        if limit <= 0:
            return [], True
        now = clock.now()
        saturated = [s for s, n in self._per_sub.items() if n >= self.per_subscription]
        # More rows than slots, so that one subscription's backlog at the head of the queue
        # (beyond its own slots) does not leave the others' slots empty.
        fetch = limit * self.per_subscription
        query = (
            select(
                Delivery.id,
                Delivery.subscription_id,
                Delivery.tries,
                Delivery.attempt_count,
                OutboxEvent.id.label("event_id"),
                OutboxEvent.type,
                OutboxEvent.payload,
                OutboxEvent.created_at.label("event_at"),
                OutboxEvent.incident_id,
                OutboxEvent.incident_key,
                OutboxEvent.incident_title,
                OutboxEvent.severity,
                OutboxEvent.tlp,
                OutboxEvent.status,
                OutboxEvent.reporter_ministry_id,
                Subscription.url,
                Subscription.active,
                Subscription.max_tlp,
                Subscription.ministry_id,
                Subscription.secret_ciphertext,
                Subscription.previous_secret_ciphertext,
                Subscription.previous_secret_expires_at,
                Ministry.kind,
            )
            .join(OutboxEvent, OutboxEvent.id == Delivery.outbox_event_id)
            .join(Subscription, Subscription.id == Delivery.subscription_id)
            .join(Ministry, Ministry.id == Subscription.ministry_id)
            .where(IS_PENDING, Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at)
            .limit(fetch)
            .with_for_update(of=Delivery, skip_locked=True)
        )
        if saturated:
            query = query.where(Delivery.subscription_id.not_in(saturated))
        token = new_id()
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(query)).all()
            budget = Counter({s: self.per_subscription - n for s, n in self._per_sub.items()})
            chosen: list[Any] = []
            inactive: list[uuid.UUID] = []
            for row in rows:
                if not row.active:
                    inactive.append(row.id)
                    continue
                budget.setdefault(row.subscription_id, self.per_subscription)
                if budget[row.subscription_id] > 0 and len(chosen) < limit:
                    budget[row.subscription_id] -= 1
                    chosen.append(row)
            if chosen:
                await session.execute(
                    update(table_of(Delivery))
                    .where(Delivery.id.in_([r.id for r in chosen]))
                    .values(next_attempt_at=now + self.lease, lease_token=token)
                )
            if inactive:
                await session.execute(
                    update(table_of(Delivery))
                    .where(Delivery.id.in_(inactive))
                    .values(
                        status="failed",
                        next_attempt_at=None,
                        finished_at=now,
                        last_error="the subscription is not active",
                    )
                )
        backlog = len(rows) == fetch or len(chosen) + len(inactive) < len(rows)
        return self._prepare(chosen, token, now), backlog

    def _prepare(self, rows: Sequence[Any], token: uuid.UUID, now: datetime) -> list[Claimed]:
        bodies: dict[tuple[uuid.UUID, bool], bytes] = {}
        secrets: dict[uuid.UUID, tuple[tuple[str, ...], str | None]] = {}
        claimed = []
        for row in rows:
            if row.subscription_id not in secrets:
                secrets[row.subscription_id] = self._secrets(row, now)
            keys, problem = secrets[row.subscription_id]
            snapshot = None
            if row.incident_id is not None:
                snapshot = Snapshot(
                    row.incident_id,
                    row.incident_key,
                    row.incident_title,
                    row.status,
                    row.severity,
                    row.tlp,
                    row.reporter_ministry_id,
                )
            full = snapshot is None or shown_in_full(
                snapshot,
                max_tlp=row.max_tlp,
                ministry_id=row.ministry_id,
                co_lead=row.kind == "co_lead",
            )
            key = (row.event_id, full)
            if key not in bodies:
                try:
                    bodies[key] = self._body(row, snapshot, full)
                except ValueError as exc:  # a payload its model refuses: fail it, don't loop
                    logger.error("webhook event %s has a malformed payload: %s", row.event_id, exc)
                    bodies[key] = b""
            if not bodies[key] and problem is None:
                problem = "the event's payload does not match its schema"
            claimed.append(
                Claimed(
                    id=row.id,
                    lease=token,
                    subscription_id=row.subscription_id,
                    url=row.url,
                    secrets=keys,
                    body=bodies[key],
                    tries=row.tries,
                    attempt_count=row.attempt_count,
                    event_type=row.type,
                    incident_id=row.incident_id,
                    problem=problem,
                    event_at=row.event_at,
                )
            )
        return claimed

    def _secrets(self, row: Any, now: datetime) -> tuple[tuple[str, ...], str | None]:
        try:
            keys = [self.box.open(row.secret_ciphertext, row.subscription_id)]
            expires = row.previous_secret_expires_at
            if row.previous_secret_ciphertext and expires is not None and expires > now:
                keys.append(self.box.open(row.previous_secret_ciphertext, row.subscription_id))
        except SecretUnavailable as exc:
            return (), f"cannot sign: {exc}"
        return tuple(keys), None

    @staticmethod
    def _body(row: Any, snapshot: Snapshot | None, full: bool) -> bytes:
        message = {
            "type": row.type,
            "timestamp": row.event_at.isoformat().replace("+00:00", "Z"),
            "data": build_data(row.type, row.payload, snapshot, full=full),
        }
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()

    # --- sending ---------------------------------------------------------------------------

    async def send(self, claimed: Claimed) -> Outcome:
        now = clock.now()
        if claimed.problem is not None:
            return Outcome(claimed, now, "error", error=claimed.problem)
        timestamp = int(now.timestamp())
        msg_id = webhook_id(claimed.id)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(msg_id, timestamp, claimed.body, claimed.secrets),
        }
        started = time.perf_counter()

        def took() -> float:
            return round((time.perf_counter() - started) * 1000, 2)

        try:
            # Connect, write and read each have their timeout; this bounds a slow drip too.
            async with asyncio.timeout(self.timeout * 3):
                async with self.client.stream(
                    "POST", claimed.url, content=claimed.body, headers=headers
                ) as response:
                    raw = b""
                    async for chunk in response.aiter_bytes():
                        raw += chunk
                        if len(raw) >= RESPONSE_EXCERPT_BYTES:
                            break
        except EgressRefused as exc:
            return Outcome(
                claimed, now, "blocked", latency_ms=took(), error=_short(f"blocked: {exc}")
            )
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(claimed, now, "timeout", latency_ms=took(), error="timed out")
        except (httpx.HTTPError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            return Outcome(claimed, now, "network_error", latency_ms=took(), error=_short(detail))
        except Exception as exc:
            logger.exception("webhook delivery %s failed unexpectedly", claimed.id)
            return Outcome(claimed, now, "error", latency_ms=took(), error=_short(repr(exc)))
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(claimed, now, "delivered", status, took(), None, _excerpt(raw))
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        return Outcome(
            claimed,
            now,
            "http_error",
            status,
            took(),
            error,
            _excerpt(raw),
            parse_retry_after(response.headers.get("retry-after"), now),
        )

    # --- recording -------------------------------------------------------------------------

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of outcomes in one transaction."""
        if not outcomes:
            return
        now = clock.now()
        updates, attempts = [], []
        gone: set[uuid.UUID] = set()
        last: dict[uuid.UUID, Outcome] = {}
        tally = Counter[str]()
        for o in outcomes:
            c = o.claimed
            tries = c.tries + 1
            state: dict[str, Any] = {
                "b_id": c.id,
                "b_lease": c.lease,
                "tries": tries,
                "attempt_count": c.attempt_count + 1,
                "last_attempt_at": o.at,
                "last_status_code": o.status_code,
                "last_error": o.error,
            }
            delay = None if o.ok or o.status_code == 410 else retry_delay(tries, o.retry_after)
            if o.ok:
                state.update(status="delivered", next_attempt_at=None, finished_at=o.at)
                tally["delivered"] += 1
            elif delay is None:
                state.update(status="failed", next_attempt_at=None, finished_at=o.at)
                tally["failed"] += 1
            else:
                state.update(status="pending", next_attempt_at=o.at + delay, finished_at=None)
                tally["retried"] += 1
            if o.status_code == 410:
                gone.add(c.subscription_id)
            updates.append(state)
            attempts.append(
                {
                    "id": new_id(),
                    "delivery_id": c.id,
                    "number": c.attempt_count + 1,
                    "at": o.at,
                    "outcome": o.outcome,
                    "status_code": o.status_code,
                    "latency_ms": o.latency_ms,
                    "error": o.error,
                    "response_excerpt": o.excerpt,
                }
            )
            if c.subscription_id not in last or last[c.subscription_id].at <= o.at:
                last[c.subscription_id] = o
        table = table_of(Delivery)
        async with self.db.unit_of_work() as session:
            # Keep the deliveries from being deleted (with their subscription) meanwhile.
            alive = set(
                (
                    await session.scalars(
                        select(Delivery.id)
                        .where(Delivery.id.in_([u["b_id"] for u in updates]))
                        .with_for_update(key_share=True)
                    )
                ).all()
            )
            leased = (
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.lease_token == bindparam("b_lease"))
                .values(
                    {**{name: bindparam(name) for name in OUTCOME_COLUMNS}, "lease_token": None}
                )
            )
            ongoing = [u for u in updates if u["b_id"] in alive and u["status"] != "failed"]
            if ongoing:
                await session.execute(leased, ongoing)
            # Failures are few: each is written on its own, so its timeline event is recorded
            # only if this dispatcher still held the lease.
            ended = []
            for u in updates:
                if u["b_id"] in alive and u["status"] == "failed":
                    result = await session.execute(leased.returning(table.c.id), u)
                    if result.first() is not None:
                        ended.append(u["b_id"])
            if alive:
                await session.execute(
                    insert(table_of(Attempt)),
                    [a for a in attempts if a["delivery_id"] in alive],
                )
            await self._record_failures(session, [o for o in outcomes if o.claimed.id in ended])
            await self._track_failing(session, last, gone, now)
        metrics.record_delivery_outcomes(
            [(o.outcome, o.latency_ms) for o in outcomes],
            {k: tally[k] for k in ("delivered", "retried", "failed")},
            [
                (o.at - o.claimed.event_at).total_seconds()
                for o in outcomes
                if o.claimed.attempt_count == 0 and o.claimed.event_at is not None
            ],
        )

    @staticmethod
    async def _record_failures(session: Any, outcomes: Sequence[Outcome]) -> None:
        """A delivery that ended failed is a webhook outcome on its incident's timeline."""
        events = [
            Event(
                o.claimed.incident_id,
                SYSTEM,
                "webhook.delivery_failed",
                {
                    "delivery_id": str(o.claimed.id),
                    "subscription_id": str(o.claimed.subscription_id),
                    "event_type": o.claimed.event_type,
                    "attempts": o.claimed.attempt_count + 1,
                    "last_error": o.error,
                },
                o.at,
            )
            for o in outcomes
            if o.claimed.incident_id is not None
        ]
        await emit_many(session, events)

    async def _track_failing(
        self,
        session: Any,
        last: dict[uuid.UUID, Outcome],
        gone: set[uuid.UUID],
        now: datetime,
    ) -> None:
        table = table_of(Subscription)
        healthy = [s for s, o in last.items() if o.ok]
        failing = [s for s, o in last.items() if not o.ok and s not in gone]
        # On the connection, not through the session: when a subscription started failing is
        # not what the process caches keep (app.caches), so it must not drop them.
        connection = await session.connection()
        if healthy:
            await connection.execute(
                update(table)
                .where(table.c.id.in_(healthy), table.c.failing_since.is_not(None))
                .values(failing_since=None)
            )
        if failing:
            await connection.execute(
                update(table)
                .where(table.c.id.in_(failing), table.c.failing_since.is_(None))
                .values(failing_since=now)
            )
            overdue = (
                await session.scalars(
                    select(table.c.id).where(
                        table.c.id.in_(failing),
                        table.c.active,
                        table.c.failing_since <= now - FAILING_DISABLES_AFTER,
                    )
                )
            ).all()
            for subscription_id in overdue:
                await service.disable(session, subscription_id, "failing", now)
        for subscription_id in sorted(gone):
            await service.disable(session, subscription_id, "gone", now)

    # --- running ---------------------------------------------------------------------------

    async def drain(self) -> int:
        """Send everything due now and record it (for tests and one-off runs)."""
        total = 0
        while claimed := await self.claim(self.max_in_flight):
            outcomes = await asyncio.gather(*(self.send(c) for c in claimed))
            await self.record(outcomes)
            total += len(claimed)
        return total

    async def start(self) -> None:
        self._stopping = False
        signals.subscribe(self._wake)
        self._runner = asyncio.create_task(self._run())
        self._writer = asyncio.create_task(self._write())
        if self.listen_url is not None:
            self._listener = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        """Finish the attempts in flight, record them, and stop."""
        self._stopping = True
        self._wake.set()
        signals.unsubscribe(self._wake)
        if self._runner is not None:
            await self._runner
        if self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if self._writer is not None:
            await self._results.join()
        for task in (self._writer, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._writer = self._listener = None

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._slot.clear()
            self._completed = 0
            try:
                claimed, backlog = await self._claim(self.max_in_flight - len(self._inflight))
            except Exception:
                logger.exception("claiming webhook deliveries failed; retrying")
                await self._pause(RECONNECT_DELAY)
                continue
            for c in claimed:
                self._launch(c)
            self._refill = max(1, len(self._inflight) // 4)
            # With work left for lack of slots, claim again once a few have freed up (one
            # claim per freed slot would cost a transaction per delivery).
            await self._pause(self.poll if backlog else await self._until_due(), slots=backlog)

    async def _pause(self, seconds: float, *, slots: bool = False) -> None:
        """Wait for a commit signal, enough freed slots (``slots``), or the timeout."""
        waits = [asyncio.ensure_future(self._wake.wait())]
        if slots and self._inflight:
            waits.append(asyncio.ensure_future(self._slot.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _until_due(self) -> float:
        """Seconds until the next pending delivery falls due (at most the poll interval)."""
        if len(self._inflight) >= self.max_in_flight:
            return self.poll
        try:
            async with self.db.unit_of_work(readonly=True) as session:
                due = await session.scalar(
                    select(func.min(Delivery.next_attempt_at)).where(IS_PENDING)
                )
        except Exception:
            logger.exception("reading the next due delivery failed")
            return self.poll
        if due is None:
            return self.poll
        return min(self.poll, max(MIN_WAIT, (due - clock.now()).total_seconds()))

    def _launch(self, claimed: Claimed) -> None:
        self._per_sub[claimed.subscription_id] += 1
        task = asyncio.create_task(self._send_one(claimed))
        self._inflight[claimed.id] = task

    async def _send_one(self, claimed: Claimed) -> None:
        try:
            outcome = await self.send(claimed)
            self._results.put_nowait(outcome)
        finally:
            self._inflight.pop(claimed.id, None)
            self._per_sub[claimed.subscription_id] -= 1
            if self._per_sub[claimed.subscription_id] <= 0:
                del self._per_sub[claimed.subscription_id]
            self._completed += 1
            if self._completed >= self._refill or not self._inflight:
                self._slot.set()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._results.get()]
            deadline = loop.time() + WRITE_LINGER
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._results.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._results.get(), remaining))
                except TimeoutError:
                    break
            try:
                await self._record_retrying(batch)
            finally:
                for _ in batch:
                    self._results.task_done()

    async def _record_retrying(self, batch: list[Outcome]) -> None:
        for attempt in range(3):
            try:
                await self.record(batch)
                return
            except Exception:
                logger.exception(
                    "recording %d webhook outcomes failed (try %d)", len(batch), attempt + 1
                )
                await asyncio.sleep(0.5 * (attempt + 1))
        # Their leases run out and the deliveries are sent again (same webhook-id).
        logger.error("gave up recording %d webhook outcomes", len(batch))

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection; reconnect when it drops."""
        assert self.listen_url is not None
        while not self._stopping:
            conn: Any = None
            try:
                conn = await asyncpg.connect(
                    self.listen_url, server_settings={"application_name": "rrg-dispatcher"}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(app_signals.CHANNEL, lambda *_args: self._wake.set())
                self._wake.set()  # anything committed while nobody listened
                self.listening.set()
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), LISTEN_HEALTH_CHECK)
                    except TimeoutError:
                        await asyncio.wait_for(conn.execute("SELECT 1"), 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("webhook LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 5)
            if not self._stopping:
                await asyncio.sleep(RECONNECT_DELAY)
