"""The object-store backend: a job's blobs are the objects ``jobs/<job id>/<name>`` of one S3 bucket.

Why: processes on several machines share nothing but Redis and this store (the claim-check pattern: Celery
messages carry job ids and blob names, the bytes live here). Any S3 API works (AWS S3, MinIO, SeaweedFS):
``EMPATHY_S3_ENDPOINT_URL`` empty = AWS. Credentials come from the two secret files when they are set, else
from boto3's own chain (environment, profiles, instance roles), and are never logged.

S3 gives what :mod:`jobs.storage.base` promises: a PUT (or a multipart upload, at its completion) replaces an
object whole, so a reader sees the old blob or the new one. Objects are written without ACL grants (private
to the bucket's owner) and job ids are 32 random hex digits, so keys cannot be guessed. Errors that mean
"the store is not usable" (unreachable endpoint, refused credentials, missing bucket) become one
:class:`StorageUnavailable` line naming the endpoint and the bucket, never a botocore traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from jobs.storage.base import (
    BlobNotFound,
    JobStorage,
    StorageUnavailable,
    check_blob_name,
    check_job_id,
)
from shared.s3 import ObjectStoreError, s3_client
from shared.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "jobs/"
# boto3's managed transfer: uploads over 16 MiB go as a multipart upload of 16 MiB parts, 4 at a time
TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)
_MISSING = {"404", "NoSuchKey", "NotFound"}
def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage(JobStorage):
    def __init__(self, client: Any, bucket: str, *, endpoint: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.endpoint = endpoint or "AWS S3"

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        try:
            client = s3_client(settings)
        except ObjectStoreError as exc:  # an unreadable secret file
            raise StorageUnavailable(str(exc)) from None
        storage = cls(client, settings.s3_bucket, endpoint=settings.s3_endpoint_url)
        if settings.s3_create_bucket:
            storage.create_bucket()
        return storage

    # --- errors ---------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"object store {self.endpoint}, bucket {self.bucket!r}"

    @contextmanager
    def _errors(self, job_id: str = "", name: str = "") -> Iterator[None]:
        """botocore's errors as BlobNotFound (a missing key) or one StorageUnavailable line."""
        try:
            yield
        except ClientError as exc:
            code = error_code(exc)
            if code in _MISSING and name:
                raise BlobNotFound(f"job {job_id} has no {name}") from None
            message = exc.response.get("Error", {}).get("Message") or code
            hint = {"NoSuchBucket": " (create it, or set EMPATHY_S3_CREATE_BUCKET=1)",
                    "InvalidAccessKeyId": " (EMPATHY_S3_ACCESS_KEY_FILE)",
                    "SignatureDoesNotMatch": " (EMPATHY_S3_SECRET_KEY_FILE)",
                    "AccessDenied": " (credentials without rights on the bucket)",
                    "403": " (credentials refused or without rights: EMPATHY_S3_ACCESS_KEY_FILE, "
                           "EMPATHY_S3_SECRET_KEY_FILE)"}.get(code, "")
            raise StorageUnavailable(f"{self._where()}: {code}: {message}{hint}") from None
        except BotoCoreError as exc:
            raise StorageUnavailable(f"{self._where()}: {exc}") from None

    def key(self, job_id: str, name: str) -> str:
        check_blob_name(job_id, name)
        return f"{PREFIX}{job_id}/{name}"

    # --- the bucket -----------------------------------------------------------------------------------
    def check(self) -> None:
        with self._errors():
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if error_code(exc) in _MISSING:  # HEAD has no body: botocore says 404, not NoSuchBucket
                    raise StorageUnavailable(f"{self._where()}: no such bucket (create it, or set "
                                             "EMPATHY_S3_CREATE_BUCKET=1)") from None
                raise

    def create_bucket(self) -> bool:
        """Create the bucket when it is missing; True when it was created (EMPATHY_S3_CREATE_BUCKET)."""
        try:
            self.check()
            return False
        except StorageUnavailable as exc:
            if "no such bucket" not in str(exc):
                raise
        region = self.client.meta.region_name
        extra = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region and region != "us-east-1" else {}
        with self._errors():
            try:
                self.client.create_bucket(Bucket=self.bucket, **extra)
            except ClientError as exc:
                if error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise
                return False
        log.info("bucket created", extra={"bucket": self.bucket, "endpoint": self.endpoint})
        return True

    # --- blobs ----------------------------------------------------------------------------------------
    def put_bytes(self, job_id: str, name: str, data: bytes) -> None:
        key = self.key(job_id, name)
        with self._errors():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def put_file(self, job_id: str, name: str, source: Path, *, move: bool = False) -> None:
        key = self.key(job_id, name)
        with self._errors():
            self.client.upload_file(str(source), self.bucket, key, Config=TRANSFER)
        if move:
            Path(source).unlink(missing_ok=True)

    def put_stream(self, job_id: str, name: str, stream: IO[bytes]) -> None:
        key = self.key(job_id, name)  # straight from the stream: parts of 16 MiB, no spool file
        with self._errors():
            self.client.upload_fileobj(stream, self.bucket, key, Config=TRANSFER)

    def open(self, job_id: str, name: str) -> IO[bytes]:
        key = self.key(job_id, name)
        with self._errors(job_id, name):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def get_bytes(self, job_id: str, name: str) -> bytes:
        # the body is read inside the translation too: a connection reset mid-read is StorageUnavailable
        with self._errors(job_id, name), self.open(job_id, name) as handle:
            return handle.read()

    def fetch(self, job_id: str, name: str, target: Path) -> Path:
        key = self.key(job_id, name)
        with self._errors(job_id, name):
            self.client.download_file(self.bucket, key, str(target), Config=TRANSFER)
        return Path(target)

    def exists(self, job_id: str, name: str) -> bool:
        key = self.key(job_id, name)
        try:
            with self._errors(job_id, name):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except BlobNotFound:
            return False
        return True

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` (list_objects_v2, page by page: 1000 keys a page)."""
        with self._errors():
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])

    def names(self, job_id: str) -> list[str]:
        check_job_id(job_id)
        prefix = f"{PREFIX}{job_id}/"
        return sorted(item["Key"][len(prefix):] for item in self._objects(prefix))

    def _delete_keys(self, keys: list[str]) -> None:
        with self._errors():
            for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
                batch = [{"Key": k} for k in keys[start:start + 1000]]
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise StorageUnavailable(f"{self._where()}: could not delete {first.get('Key')}: "
                                             f"{first.get('Code')}")

    def delete(self, job_id: str) -> bool:
        check_job_id(job_id)
        keys = [item["Key"] for item in self._objects(f"{PREFIX}{job_id}/")]
        self._delete_keys(keys)
        return bool(keys)

    def expire(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        newest: dict[str, float] = {}
        keys: dict[str, list[str]] = {}
        for item in self._objects(PREFIX):
            job_id = item["Key"][len(PREFIX):].split("/", 1)[0]
            newest[job_id] = max(newest.get(job_id, 0.0), item["LastModified"].timestamp())
            keys.setdefault(job_id, []).append(item["Key"])
        expired = sorted(j for j, t in newest.items() if now - t > older_than_s)
        for job_id in expired:
            self._delete_keys(keys[job_id])
        return expired
