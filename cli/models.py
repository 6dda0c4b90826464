"""``empathy models``: publish versioned models to the object store, or list what it holds.

    empathy models push [--models-dir models] [--to s3://empathy/models] [--modality audio --version 2]
    empathy models list [--from s3://empathy/models]

``push`` uploads each version's files with its ``metadata.json`` last: a mirror (workers, fusion, our model
server: :mod:`serving.model_mirror`) copies a version only once that file is there. The store is reached with
the ``EMPATHY_S3_*`` settings; ``--to`` / ``--from`` default to ``EMPATHY_MODELS_URL``, else
``s3://<EMPATHY_S3_BUCKET>/models``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from serving.model_mirror import ModelLocation, push, remote_versions
from shared.logs import add_log_format_argument, configure_logging
from shared.s3 import ObjectStoreError
from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    """Run ``push`` or ``list``; 1 when the store cannot be used, 2 for a wrong argument."""
    settings = get_settings()
    default_url = settings.models_url or f"s3://{settings.s3_bucket}/models"
    parser = argparse.ArgumentParser(prog="empathy models", description=__doc__.split("\n\n")[0])
    add_log_format_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    push_parser = commands.add_parser("push", help="upload local versions (metadata.json last)")
    push_parser.add_argument("--models-dir", type=Path, default=settings.models_dir,
                             help="local versioned models (default EMPATHY_MODELS_DIR=%(default)s)")
    push_parser.add_argument("--to", default=default_url, help="s3://bucket/prefix (default %(default)s)")
    push_parser.add_argument("--modality", help="only this model (a modality or fusion)")
    push_parser.add_argument("--version", type=int, help="only this version (needs --modality)")
    list_parser = commands.add_parser("list", help="complete versions per model in the store")
    list_parser.add_argument("--from", dest="source", default=default_url, help="s3://bucket/prefix (default %(default)s)")
    args = parser.parse_args(argv)
    configure_logging(settings.log_level, args.log_format, default_format="text")
    if args.command == "push" and args.version is not None and not args.modality:
        parser.error("--version needs --modality")
    try:
        if args.command == "push":
            location = ModelLocation.from_url(args.to, settings)
            pushed = push(args.models_dir, location, modality=args.modality, version=args.version)
            print(json.dumps({"to": location.url(), "pushed": [f"{m}/{v}" for m, v in pushed]}))
        else:
            location = ModelLocation.from_url(args.source, settings)
            print(json.dumps({"from": location.url(), "models": remote_versions(location)}))
    except ValueError as exc:
        print(f"empathy models: {exc}", file=sys.stderr)
        return 2
    except (ObjectStoreError, FileNotFoundError) as exc:
        print(f"empathy models: {exc}", file=sys.stderr)
        return 1
    return 0
