"""Completion callbacks' signatures: how the service signs a callback and how a receiver checks it.

The scheme is Stripe's: the ``Empathy-Signature`` header carries ``t=<unix seconds>,v1=<hex>``, where the
hex is HMAC-SHA256, keyed with the API key's webhook secret (``GET /v1/webhooks/secret``, or
``Client.webhook_secret()``), over ``"<t>." + the raw request body``. Signing the timestamp with the body
lets a receiver refuse a replayed old callback (:data:`TOLERANCE_S`); comparing in constant time leaks
nothing about a near miss. The service signs with :func:`sign` from this very module, so the two sides
cannot drift apart.

A receiver, in a few lines (or ``empathy webhook-verify`` on a saved body)::

    from empathy_client.webhooks import verify
    event = verify(secret, request.headers["Empathy-Signature"], request.get_data())  # raises if forged
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

SIGNATURE_HEADER = "Empathy-Signature"
EVENT_HEADER = "Empathy-Event"  # job.done | job.failed
DELIVERY_HEADER = "Empathy-Delivery"  # one id per attempt, for the receiver's logs
TOLERANCE_S = 300.0  # a signature older (or further in the future) than this is refused: a replay
SECRET_PREFIX = "whsec_"


class WebhookVerificationError(ValueError):
    """The callback is not one the service signed with this secret (or it is too old)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` keyed with ``secret``."""
    return hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Empathy-Signature`` header value for ``body`` (``timestamp``: now)."""
    moment = int(time.time() if timestamp is None else timestamp)
    return f"t={moment},v1={signature(secret, moment, body)}"


def verify(secret: str, header: str | None, body: bytes, *, tolerance_s: float = TOLERANCE_S,
           now: float | None = None) -> dict[str, Any]:
    """The callback's JSON once its signature holds; :class:`WebhookVerificationError` otherwise.

    ``header`` is the ``Empathy-Signature`` value; ``body`` the raw bytes received (before any JSON parsing:
    re-serialising changes bytes and breaks the signature). Several ``v1`` entries are accepted (a secret
    rotation signs with both).
    """
    if not header:
        raise WebhookVerificationError(f"no {SIGNATURE_HEADER} header")
    parts = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value for key, _, value in parts if key == "t"]
    candidates = [value for key, _, value in parts if key == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not candidates:
        raise WebhookVerificationError(f"malformed {SIGNATURE_HEADER} header: expected 't=<unix>,v1=<hex>'")
    timestamp = int(stamps[0])
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise WebhookVerificationError(f"signature timestamp {age:.0f} s away from now (tolerance {tolerance_s:g} s)")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookVerificationError("signature does not match (wrong secret, or the body was changed)")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise WebhookVerificationError(f"signed body is not JSON: {exc}") from None


def secret_for(signing_key: str, owner: str) -> str:
    """The webhook secret of one API key (``owner``: its SHA-256 digest), derived from the service's signing
    key: the service stores no per-key secret, and rotating the signing key rotates every secret."""
    return SECRET_PREFIX + hmac.new(signing_key.encode(), f"webhook:{owner}".encode(), hashlib.sha256).hexdigest()
