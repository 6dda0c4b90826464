"""``empathy storage``: the job storage of the current settings (``EMPATHY_STORAGE_BACKEND``, ``EMPATHY_S3_*``).

    empathy storage check                      # can the store be used? (exit 1 with the reason)
    empathy storage expire [--older-than S]    # remove jobs older than EMPATHY_RESULT_RETENTION_S

The running ensemble expires jobs by itself (the fusion worker, :mod:`jobs.storage.retention`); ``expire``
is for a cron job or a store nothing writes to any more.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from jobs.storage import StorageUnavailable, open_storage
from jobs.storage.retention import sweep
from shared.logs import add_log_format_argument, configure_logging
from shared.settings import get_settings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Run one storage sub-command; 0 on success, 1 when the store cannot be used."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="empathy storage", description=__doc__.split("\n\n")[0])
    add_log_format_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="check that the store answers (bucket, credentials)")
    expire = commands.add_parser("expire", help="remove every job whose newest blob is older than the retention")
    expire.add_argument("--older-than", type=float, default=float(settings.result_retention_s), metavar="S",
                        help="seconds (default EMPATHY_RESULT_RETENTION_S=%(default)s; 0 = keep everything)")
    args = parser.parse_args(argv)
    configure_logging(settings.log_level, args.log_format, default_format="text")
    where = (f"s3 {settings.s3_endpoint_url or 'AWS'} bucket {settings.s3_bucket}"
             if settings.storage_backend == "s3" else f"{settings.storage_backend} {settings.storage_dir}")
    try:
        storage = open_storage(settings)
        storage.check()
        if args.command == "check":
            print(json.dumps({"storage": where, "ready": True}))
            return 0
        expired = sweep(storage, args.older_than)
    except StorageUnavailable as exc:
        print(f"empathy storage: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"storage": where, "older_than_s": args.older_than, "expired": expired}))
    return 0
