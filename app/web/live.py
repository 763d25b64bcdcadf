"""Live updates for the board and the incident room, fed by committed changes only.

Sources: ``app.signals.on_commit`` (changes committed by this process) and, on PostgreSQL,
``LISTEN`` on the channel ``app.signals`` notifies at each commit, so changes committed by
other replicas and workers arrive too. A change reaches a stream only as an incident id;
each stream re-checks, per event, whether its user may see that incident. The same listener
tells the token cache (``app.auth.cache``) when users or tokens changed elsewhere, and
whether such changes are heard at all.

On PostgreSQL a change committed here arrives twice: through ``on_commit`` and as the echo
of its own NOTIFY, in either order. The bus matches the two per incident (a notification
that came first is remembered for ``ECHO_WINDOW`` seconds) so each commit is one event.

Every change gets an event id ``<process>-<sequence>``; a reconnecting browser sends the
last one it saw (``Last-Event-ID``) and gets what it missed from the recent ones kept here,
or, when those are gone (another process, or too long ago), a ``reset`` telling it to
reload what it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable

from app.auth.cache import principals
from app.signals import CHANNEL, PRINCIPALS_PAYLOAD, Committed, on_commit

logger = logging.getLogger("rrg.web.live")
KEEP = 2000  # recent changes kept for resuming streams
RECONNECT_SECONDS = 2.0
ECHO_WINDOW = 2.0  # how long a notification may precede its own commit's callback


class LiveBus:
    def __init__(self, keep: int = KEEP) -> None:
        self.process = secrets.token_hex(4)
        self.sequence = 0
        self.recent: deque[tuple[int, uuid.UUID]] = deque(maxlen=keep)
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unregister: Callable[[], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        # Incidents changed here whose NOTIFY echo is still to come (PostgreSQL only).
        self._echoes: Counter[uuid.UUID] = Counter()
        # Notifications published before any local commit claimed them (monotonic times).
        self._early: dict[uuid.UUID, deque[float]] = {}
        self._listening = False

    # --- sources --------------------------------------------------------------------

    async def start(self, postgres_url: str | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._unregister = on_commit(self._committed)
        if postgres_url is not None:
            self._listener = asyncio.create_task(self._listen(postgres_url))

    async def stop(self) -> None:
        if self._unregister is not None:
            self._unregister()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for waiter in self._waiters:
            waiter.set()

    def _committed(self, committed: Committed) -> None:
        if not committed.incident_ids or self._loop is None:
            return
        ids = sorted(committed.incident_ids)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._local(ids)
        else:  # a commit made on another thread's loop
            self._loop.call_soon_threadsafe(self._local, ids)

    def _claim_early(self, incident_id: uuid.UUID) -> bool:
        """Whether a recent notification about this incident, already published, was this
        commit's echo arriving first (it is then consumed)."""
        times = self._early.get(incident_id)
        horizon = time.monotonic() - ECHO_WINDOW
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            self._early.pop(incident_id, None)
            return False
        times.popleft()
        return True

    def _local(self, ids: list[uuid.UUID]) -> None:
        fresh = [i for i in ids if not (self._listening and self._claim_early(i))]
        if self._listening:
            self._echoes.update(fresh)
        if fresh:
            self.publish(fresh)

    def _notified(self, incident_id: uuid.UUID) -> None:
        if self._echoes[incident_id] > 0:
            self._echoes[incident_id] -= 1
            if not self._echoes[incident_id]:
                del self._echoes[incident_id]
            return  # our own commit, already published
        self._early.setdefault(incident_id, deque()).append(time.monotonic())
        self.publish([incident_id])

    async def _listen(self, url: str) -> None:
        import asyncpg

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == PRINCIPALS_PAYLOAD:
                principals.clear()
                return
            try:
                incident_id = uuid.UUID(payload)
            except ValueError:
                return  # "webhooks": deliveries only, nothing to show
            self._notified(incident_id)

        while True:
            try:
                connection = await asyncpg.connect(url)
                lost = asyncio.Event()
                try:
                    connection.add_termination_listener(lambda _conn, lost=lost: lost.set())
                    await connection.add_listener(CHANNEL, on_notify)
                    self._listening = True
                    principals.listening_started()
                    await lost.wait()
                finally:
                    # No echo comes while nobody listens: forget the ones expected; cached
                    # principals are not served while changes made elsewhere go unheard.
                    if self._listening:
                        principals.listening_stopped()
                    self._listening = False
                    self._echoes.clear()
                    self._early.clear()
                    with contextlib.suppress(Exception):
                        await connection.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("live updates: LISTEN connection lost; reconnecting", exc_info=True)
            await asyncio.sleep(RECONNECT_SECONDS)

    # --- fan-out ------------------------------------------------------------------

    def publish(self, incident_ids: Iterable[uuid.UUID]) -> None:
        for incident_id in incident_ids:
            self.sequence += 1
            self.recent.append((self.sequence, incident_id))
        for waiter in self._waiters:
            waiter.set()

    def event_id(self, sequence: int) -> str:
        return f"{self.process}-{sequence}"

    def position(self, last_event_id: str | None) -> int | None:
        """Where a stream resumes: the sequence after ``last_event_id``; the present when
        there is none; None when it cannot be resumed here (reset)."""
        if not last_event_id:
            return self.sequence
        process, _, number = last_event_id.partition("-")
        if process != self.process or not number.isdigit():
            return None
        sequence = int(number)
        oldest = self.recent[0][0] if self.recent else self.sequence + 1
        if sequence > self.sequence or sequence < oldest - 1:
            return None
        return sequence

    def since(self, sequence: int) -> list[tuple[int, uuid.UUID]] | None:
        """The changes after ``sequence``; None when some were already forgotten."""
        if sequence >= self.sequence:
            return []
        if not self.recent or self.recent[0][0] > sequence + 1:
            return None
        return [(s, i) for s, i in self.recent if s > sequence]

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)
