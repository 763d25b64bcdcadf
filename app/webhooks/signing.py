"""The Standard Webhooks signature: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``,
one space-separated entry per secret in force."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from app.webhooks.secrets import secret_key_bytes


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1,"
        + base64.b64encode(hmac.new(secret_key_bytes(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )
