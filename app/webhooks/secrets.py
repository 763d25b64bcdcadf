"""Subscription secrets: generated in the Standard Webhooks form, encrypted at rest.

A secret is ``whsec_`` + base64 of 32 random bytes. In the database it is sealed with
AES-256-GCM under a key from the environment (never stored in the database), with the
subscription's id as associated data (a sealed secret copied onto another subscription does
not open) and the key's id as a prefix (``kid:base64(nonce + ciphertext)``), so keys can be
rotated: ``RRG_WEBHOOK_KEYS`` lists ``kid:key`` entries, the first seals, all of them open.
Without it, one key is derived from ``RRG_SECRET_KEY``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import Settings

PREFIX = "whsec_"
SECRET_BYTES = 32
NONCE_BYTES = 12


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(PREFIX))


class SecretUnavailable(Exception):
    """A sealed secret cannot be opened with the configured keys."""


@dataclass(frozen=True)
class SecretBox:
    keys: tuple[tuple[str, bytes], ...]  # (kid, 32-byte key); the first seals

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.webhook_keys is not None and settings.webhook_keys.get_secret_value():
            return cls(tuple(_parse_key(e) for e in _entries(settings.webhook_keys)))
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"rrg webhook secrets v1"
        ).derive(settings.secret_key.get_secret_value().encode())
        # The id names the key it came from, so a changed RRG_SECRET_KEY fails loudly.
        kid = "d" + hashlib.sha256(derived).hexdigest()[:8]
        return cls(((kid, derived),))

    def seal(self, secret: str, subscription_id: uuid.UUID) -> str:
        kid, key = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, secret.encode(), subscription_id.bytes)
        return f"{kid}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, subscription_id: uuid.UUID) -> str:
        kid, _, blob = sealed.partition(":")
        key = dict(self.keys).get(kid)
        if key is None:
            raise SecretUnavailable(
                f"the secret is sealed with key {kid!r}, which is not configured"
            )
        try:
            raw = base64.b64decode(blob)
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subscription_id.bytes)
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretUnavailable("the sealed secret does not open with its key") from None
        return plain.decode()

    def needs_resealing(self, sealed: str) -> bool:
        return sealed.partition(":")[0] != self.keys[0][0]


def _entries(value: object) -> list[str]:
    from pydantic import SecretStr

    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return [e.strip() for e in text.split(",") if e.strip()]


def _parse_key(entry: str) -> tuple[str, bytes]:
    kid, sep, encoded = entry.partition(":")
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        key = b""
    if not sep or not kid or len(key) != 32:
        raise ValueError("RRG_WEBHOOK_KEYS entries are kid:base64-of-32-bytes, comma-separated")
    return kid, key
