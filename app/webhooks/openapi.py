"""The event payloads, published under OpenAPI 3.1 ``webhooks`` (one entry per event type,
its request body the event's envelope)."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header

from app.webhooks.payloads import ENVELOPES

HEADERS = {
    "webhook_id": ("webhook-id", "The message id: the same for every retry and redelivery"),
    "webhook_timestamp": ("webhook-timestamp", "Unix seconds of this attempt"),
    "webhook_signature": (
        "webhook-signature",
        "`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the secret; two "
        "space-separated entries for 24 hours after a rotation",
    ),
}
DESCRIPTION = (
    "Sent to each active subscription whose filters match (Standard Webhooks). Respond 2xx "
    "to acknowledge; anything else is retried (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, "
    "10 h, 10 h, ±20%, or after Retry-After); 410 disables the subscription. Events about "
    "incidents above the subscription's `max_tlp` carry a redacted `data`."
)


def _receiver(envelope: type[Any]) -> Any:
    async def receive(**_: Any) -> None:
        """A receiver of this event (documentation only)."""

    parameters = [
        inspect.Parameter(
            "body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[envelope, Body()]
        ),
        *(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[str, Header(alias=alias, description=text)],
            )
            for name, (alias, text) in HEADERS.items()
        ),
    ]
    receive.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    return receive


def publish_webhooks(app: FastAPI) -> None:
    for event_type, envelope in ENVELOPES.items():
        app.webhooks.add_api_route(
            event_type,
            _receiver(envelope),
            methods=["POST"],
            name=f"webhook {event_type}",
            operation_id="webhook_" + event_type.replace(".", "_"),
            summary=event_type,
            description=DESCRIPTION,
            response_description="Acknowledged (any 2xx)",
            responses={410: {"description": "Gone: the subscription is disabled"}},
            tags=["webhooks"],
        )
