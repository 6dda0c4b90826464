"""The interface every job-storage backend offers: a job's blobs, by name, written whole or not at all.

A blob is named by a relative path inside its job (``video.mp4``, ``series/audio.npy``, ``result.json``);
:mod:`jobs.files` knows which names a job has. Every write is atomic (a reader sees the old blob, the new
one or none, never half of one) and blobs are never modified in place, only replaced, so a copy taken by
:meth:`JobStorage.fetch` stays what it was. A process that needs a blob as a file (the workers decode the
upload with FFmpeg) fetches it into a temporary file it owns and deletes it after: no process opens a
file another one wrote.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

from jobs.store import valid_job_id
from shared.s3 import ObjectStoreError

_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
CHUNK = 1 << 20


class BlobNotFound(FileNotFoundError):
    """No blob of that name in that job (never written, or the job was deleted)."""


class StorageUnavailable(ObjectStoreError):
    """The store cannot be used (unreachable, refused credentials, no bucket): one line saying which and why."""


def check_job_id(job_id: str) -> None:
    """Job ids are 32 hex digits (:func:`jobs.store.valid_job_id`): nothing else names a job's folder or prefix."""
    if not valid_job_id(job_id):
        raise ValueError(f"not a job id: {job_id[:64]!r}")


def check_blob_name(job_id: str, name: str) -> None:
    """Blob names are plain relative paths inside a valid job: nothing can point outside it."""
    check_job_id(job_id)
    if not _NAME_RE.match(name) or len(name) > 200:
        raise ValueError(f"not a blob name: {name[:64]!r}")


class JobStorage(ABC):
    """A job's blobs. Backends implement the abstract methods; the others follow from them."""

    @abstractmethod
    def put_bytes(self, job_id: str, name: str, data: bytes) -> None:
        """Write a blob whole (atomically replacing any blob of that name)."""

    @abstractmethod
    def put_file(self, job_id: str, name: str, source: Path, *, move: bool = False) -> None:
        """Store a local file as a blob; ``move``: the caller gives the file up (a backend may rename it)."""

    @abstractmethod
    def open(self, job_id: str, name: str) -> IO[bytes]:
        """A binary stream of the blob (close it); :class:`BlobNotFound` when there is none."""

    @abstractmethod
    def exists(self, job_id: str, name: str) -> bool:
        """Whether the blob exists."""

    @abstractmethod
    def names(self, job_id: str) -> list[str]:
        """Every blob of the job, sorted (empty when the job has none)."""

    @abstractmethod
    def delete(self, job_id: str) -> bool:
        """Remove every blob of the job; False when it had none."""

    @abstractmethod
    def expire(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        """Delete every job whose newest blob is older than ``older_than_s`` seconds; the ids it deleted
        (``EMPATHY_RESULT_RETENTION_S``: results are not kept for ever on any backend)."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StorageUnavailable` when the store cannot be used (health checks, start-up)."""

    def put_stream(self, job_id: str, name: str, stream: IO[bytes]) -> None:
        """Store what ``stream`` reads (from its current position to its end) as a blob."""
        with tempfile.NamedTemporaryFile(prefix="empathy-put-", delete=False) as spool:
            shutil.copyfileobj(stream, spool, CHUNK)
        try:
            self.put_file(job_id, name, Path(spool.name), move=True)
        finally:
            Path(spool.name).unlink(missing_ok=True)

    def get_bytes(self, job_id: str, name: str) -> bytes:
        """The whole blob; :class:`BlobNotFound` when there is none."""
        with self.open(job_id, name) as handle:
            return handle.read()

    def fetch(self, job_id: str, name: str, target: Path) -> Path:
        """Copy the blob into the local file ``target``, which the caller owns (and deletes)."""
        with self.open(job_id, name) as handle, Path(target).open("wb") as out:
            shutil.copyfileobj(handle, out, CHUNK)
        return Path(target)

    def job_exists(self, job_id: str) -> bool:
        """Whether the job has any blob."""
        return bool(self.names(job_id))
