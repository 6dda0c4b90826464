"""Retention (``EMPATHY_RESULT_RETENTION_S``): jobs whose newest blob is older are removed from the store.

Why here and not in the store: a local folder has no lifecycle rules and not every S3 offers them, so the
ensemble expires its own jobs, the same way on every backend (:meth:`jobs.storage.JobStorage.expire`). The
fusion workers' watchdog thread (services/watchdog.py) calls :func:`sweep_if_due` in its loop, under its Redis
lock (so a running ensemble sweeps without another process, and never inside a task), at most once per
:data:`SWEEP_EVERY_S` per process; ``empathy storage expire`` does it on demand (cron, a Kubernetes CronJob).
"""

from __future__ import annotations

import logging
import threading
import time

from jobs.storage.base import JobStorage, StorageUnavailable
from shared.settings import Settings

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 600.0  # a sweep lists every job's blobs: cheap, but not after every job
_last_sweep = 0.0
_lock = threading.Lock()


def sweep(storage: JobStorage, retention_s: float) -> list[str]:
    """Expire now; the ids removed (none when ``retention_s`` is 0: kept until DELETE)."""
    if retention_s <= 0:
        return []
    expired = storage.expire(retention_s)
    if expired:
        log.info("expired jobs removed from storage", extra={"jobs": len(expired), "retention_s": retention_s})
    return expired


def sweep_if_due(storage: JobStorage, settings: Settings, *, now: float | None = None) -> list[str] | None:
    """Sweep when this process has not swept for :data:`SWEEP_EVERY_S`; None when not due. A failing store
    is logged, never raised: a job that just finished must not fail because of old ones."""
    global _last_sweep
    now = time.monotonic() if now is None else now
    with _lock:
        if settings.result_retention_s <= 0 or (_last_sweep and now - _last_sweep < SWEEP_EVERY_S):
            return None
        _last_sweep = now
    try:
        return sweep(storage, settings.result_retention_s)
    except (StorageUnavailable, OSError) as exc:
        log.warning("retention sweep failed", extra={"error": str(exc)})
        return None
