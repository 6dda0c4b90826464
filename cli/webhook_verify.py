"""``empathy webhook-verify``: check a received completion callback's signature (a receiver's test tool).

    empathy webhook-verify --secret whsec_... --signature 't=...,v1=...' body.json

exits 0 and prints the event and job id when the body is one the service signed with this secret (within the
tolerance), 1 otherwise with the reason. In a receiver's own code use the function it calls,
:func:`empathy_client.webhooks.verify`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from empathy_client.webhooks import SIGNATURE_HEADER, TOLERANCE_S, WebhookVerificationError, verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="empathy webhook-verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("body", type=Path, help="the raw request body as received ('-': standard input)")
    parser.add_argument("--signature", required=True, help=f"the {SIGNATURE_HEADER} header's value")
    parser.add_argument("--secret", default=None,
                        help="the API key's webhook secret (GET /v1/webhooks/secret); default EMPATHY_WEBHOOK_SECRET")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE_S,
                        help="seconds a signature may be old (a replay is older)")
    args = parser.parse_args(argv)
    secret = args.secret or os.environ.get("EMPATHY_WEBHOOK_SECRET")
    if not secret:
        parser.error("give --secret or set EMPATHY_WEBHOOK_SECRET")
    body = sys.stdin.buffer.read() if str(args.body) == "-" else args.body.read_bytes()
    try:
        event = verify(secret, args.signature, body, tolerance_s=args.tolerance)
    except WebhookVerificationError as exc:
        print(f"empathy webhook-verify: NOT verified: {exc}", file=sys.stderr)
        return 1
    job = event.get("job") or {}
    print(f"verified: {event.get('event')} job {job.get('id')} ({job.get('state')})")
    return 0
