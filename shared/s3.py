"""One way to reach the object store, for the job storage (:mod:`jobs.storage.s3`) and the model mirror
(:mod:`serving.model_mirror`): a boto3 client built from ``EMPATHY_S3_*``, and ``s3://bucket/prefix`` URLs.

Credentials come from the two secret files when they are set, else from boto3's own chain (environment,
profiles, instance roles: AWS S3 works unchanged), and are never logged. boto3 is imported when a client is
first asked for, so nothing that stays on local files pays for it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from shared.settings import Settings

_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()


class ObjectStoreError(RuntimeError):
    """The object store cannot be used (unreachable, refused credentials, no bucket, unreadable secret)."""


def read_secret(variable: str, path: str) -> str:
    """One credential from its file (stripped); ObjectStoreError naming the variable, never the value."""
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise ObjectStoreError(f"{variable}={path}: {exc.strerror}") from None
    if not value:
        raise ObjectStoreError(f"{variable}={path} is empty")
    return value


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for ``settings`` (one per endpoint and credentials: boto3 clients are thread-safe)."""
    key = (settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_file, settings.s3_secret_key_file)
    with _clients_lock:
        if key in _clients:
            return _clients[key]
        import boto3
        from botocore.config import Config

        credentials: dict[str, str] = {}
        if settings.s3_access_key_file or settings.s3_secret_key_file:
            credentials = {
                "aws_access_key_id": read_secret("EMPATHY_S3_ACCESS_KEY_FILE", settings.s3_access_key_file),
                "aws_secret_access_key": read_secret("EMPATHY_S3_SECRET_KEY_FILE", settings.s3_secret_key_file),
            }
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                        # path-style: a self-hosted endpoint has no per-bucket DNS names
                        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"})
        client = boto3.session.Session().client(
            "s3", endpoint_url=settings.s3_endpoint_url or None, region_name=settings.s3_region or None,
            config=config, **credentials)
        _clients[key] = client
        return client


def is_s3_url(value: str | Path | None) -> bool:
    return str(value or "").startswith("s3://")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``; ValueError for anything else."""
    if not is_s3_url(url):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, prefix.strip("/")
