"""``/v1/webhooks``: what a callback receiver needs from the service, for the caller's own API key.

``GET /v1/webhooks/secret`` answers the caller's webhook secret (derived from the service's signing key,
:func:`jobs.callbacks.webhook_secret`), with which every callback of the caller's jobs is signed
(:mod:`empathy_client.webhooks` has the scheme and the verifier). Authenticated like ``/v1/jobs``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from empathy_client.webhooks import EVENT_HEADER, SIGNATURE_HEADER
from gateway.jobs_api import ApiError, _caller, authenticate
from jobs.callbacks import CallbackRefused, webhook_secret

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")
bp.before_request(authenticate)


@bp.get("/secret")
def secret() -> Response:
    try:
        value = webhook_secret(current_app.config["EMPATHY_SETTINGS"], _caller().owner)
    except CallbackRefused as exc:
        raise ApiError(409, str(exc), reason="callbacks_off") from None
    return jsonify({"secret": value, "signature_header": SIGNATURE_HEADER, "event_header": EVENT_HEADER,
                    "scheme": "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.' + body)>"})
