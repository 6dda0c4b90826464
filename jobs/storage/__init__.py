"""Where a job's blobs live (the upload, per-modality series, the result): one interface, a backend per store.

``EMPATHY_STORAGE_BACKEND`` picks the backend; :data:`BACKENDS` maps each name to the module that implements
it (`local`: a folder; `s3`: an S3 bucket, docs/storage.md), so a new one is one more module and one more line here. Nothing outside ``jobs/``
builds a path into a job: processes read and write blobs through :class:`jobs.storage.base.JobStorage`,
usually through :class:`jobs.files.JobFiles`, which knows the names of a job's blobs.
"""

from __future__ import annotations

from jobs.storage.base import BlobNotFound, JobStorage, StorageUnavailable, check_blob_name
from shared.registry import load_object
from shared.settings import Settings

# backend name -> "module:class" (imported only when chosen: an object-store client is no dependency of the rest)
BACKENDS: dict[str, str] = {
    "local": "jobs.storage.local:LocalStorage",
    "s3": "jobs.storage.s3:S3Storage",
}


def open_storage(settings: Settings) -> JobStorage:
    """The job storage ``settings`` choose (``EMPATHY_STORAGE_BACKEND``); ValueError naming the known ones."""
    name = settings.storage_backend.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"EMPATHY_STORAGE_BACKEND={settings.storage_backend!r} is not a storage backend; "
                         f"expected one of {', '.join(BACKENDS)}")
    return load_object(BACKENDS[name]).from_settings(settings)


__all__ = ["BACKENDS", "BlobNotFound", "JobStorage", "StorageUnavailable", "check_blob_name", "open_storage"]
