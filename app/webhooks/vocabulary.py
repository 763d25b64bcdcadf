"""The webhook vocabularies (SPEC §7), defined once for API types, check constraints and the
dispatcher."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, get_args

EventType = Literal[
    "incident.reported",
    "incident.updated",
    "incident.status_changed",
    "incident.owner_assigned",
    "incident.signed_off",
    "incident.escalated",
    "action.created",
    "action.status_changed",
    "action.escalated",
    "comment.created",
    "webhook.test",
    "webhook.endpoint_disabled",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# Events about the webhook machinery itself go to their ministry's subscriptions only.
WEBHOOK_EVENT_PREFIX = "webhook."

DeliveryStatus = Literal["pending", "delivered", "failed"]
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)

AttemptOutcome = Literal["delivered", "http_error", "timeout", "network_error", "blocked", "error"]
ATTEMPT_OUTCOMES: tuple[str, ...] = get_args(AttemptOutcome)

DisabledReason = Literal["gone", "failing"]

# The delay before each attempt, counted from the failure of the one before: the first is
# immediate, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (each ±20%); after the last
# attempt fails the delivery is `failed`.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
JITTER = 0.2
# A subscription whose deliveries have failed without a success for this long is disabled.
FAILING_DISABLES_AFTER = timedelta(days=5)
# After a rotation, deliveries are signed with the new and the old secret for this long.
ROTATION_OVERLAP = timedelta(hours=24)
# The longest Retry-After honoured (a longer one is cut to this).
MAX_RETRY_AFTER = timedelta(hours=24)
RESPONSE_EXCERPT_BYTES = 4096
