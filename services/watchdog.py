"""The job watchdog: no accepted job stays ``queued``/``running`` because a task vanished.

Celery's own safety net for a worker that died holding a task is Redis's visibility timeout
(``EMPATHY_TASK_VISIBILITY_TIMEOUT_S``, which must exceed the longest analysis, so an hour); and a chord
whose part could not report (Redis away at that instant) never calls its fusion at all. The watchdog runs
in every fusion worker (a thread; one sweep per interval across all of them, by a Redis lock) and looks
at the jobs not yet finished (``empathy:active``), every ``EMPATHY_WATCHDOG_INTERVAL_S``:

* a modality whose task is running but whose heartbeat (refreshed every lease/6 by the task) is older than
  ``EMPATHY_TASK_LEASE_S`` lost its worker: its analysis is sent again (a delivery, counted against
  ``EMPATHY_TASK_MAX_ATTEMPTS``);
* a modality still ``queued`` whose task message is no longer waiting in its queue, and was queued more
  than a lease ago, lost its message (taken by a worker that died before starting it, or never sent
  because the gateway died between recording and sending): sent again;
* a job whose modalities are all finished but which nobody fused for a lease (the chord never fired, or
  the fusion worker died): fusion is sent with the stored series.

Duplicates are harmless by construction: an analysis that finds its stored result returns it, and fusion
of a finished job returns the job as it is. The original message of a re-sent task, restored after the
visibility timeout, therefore only confirms what was done.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from celery import Celery

from jobs.files import JobFiles, series_name
from jobs.request import JobRequest
from jobs.store import FINAL_STATES, MODALITY_FINAL, QUEUED, JobStore
from services.celery_app import ANALYZE_TASK, FUSE_TASK
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

LOCK_KEY = "empathy:watchdog"


def _analysis_ids_in(store: JobStore, queue: str) -> set[tuple[str, str]]:
    """(job, modality) of every analysis message waiting in ``queue``."""
    found = set()
    for raw in store.client.lrange(queue, 0, -1):
        try:
            message = json.loads(raw)
            if message["headers"]["task"] != ANALYZE_TASK:
                continue
            body = json.loads(_decode_body(message))
            kwargs = body[1]
            found.add((kwargs["job_id"], kwargs["modality"]))
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return found


def _decode_body(message: dict[str, Any]) -> str:
    import base64

    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body).decode()
    return body


def sweep(store: JobStore, app: Celery, settings: Settings, now: float | None = None) -> dict[str, int]:
    """One look at every active job; returns how many analyses and fusions were sent again."""
    now = time.time() if now is None else now
    lease = settings.task_lease_s
    sent = {"analyses": 0, "fusions": 0}
    waiting: dict[str, set[tuple[str, str]]] = {}
    for job_id in store.active_jobs():
        raw = store.raw(job_id)
        if not raw or raw.get("state") in FINAL_STATES:
            store.forget_active(job_id)
            continue
        names = list(JobRequest.from_hash(raw).modalities)
        pending = [m for m in names if raw.get(f"{m}.status") not in MODALITY_FINAL]
        for modality in pending:
            beat = float(raw.get(f"{modality}.heartbeat") or raw.get("created") or 0.0)
            if now - beat < lease:
                continue
            if raw.get(f"{modality}.status") == QUEUED:
                if modality not in waiting:
                    waiting[modality] = _analysis_ids_in(store, modality)
                if (job_id, modality) in waiting[modality]:
                    continue  # still in line behind other jobs
            log.warning("task vanished; sending it again",
                        extra={"job": job_id, "modality": modality, "status": raw.get(f"{modality}.status"),
                               "silent_s": round(now - beat, 1)})
            store.requeued(job_id, modality)
            app.send_task(ANALYZE_TASK, kwargs={"job_id": job_id, "modality": modality})
            sent["analyses"] += 1
        if pending:
            continue
        last = max(float(raw.get("updated") or 0.0), float(raw.get("fusion.requested") or 0.0))
        if now - last < lease:
            continue
        files = JobFiles.open(settings, job_id)
        outcomes = [{"modality": m, "status": raw.get(f"{m}.status"), "series": series_name(m)}
                    for m in names if files.has_series(m)]
        log.warning("every modality finished but the job was not fused; sending fusion",
                    extra={"job": job_id, "silent_s": round(now - last, 1)})
        store.client.hset(store.key(job_id), "fusion.requested", f"{now:.3f}")
        app.send_task(FUSE_TASK, args=[outcomes], kwargs={"job_id": job_id})
        sent["fusions"] += 1
    return sent


def run_forever(app: Celery, stop: threading.Event) -> None:
    """The fusion workers' watchdog loop (one sweep per interval across all of them)."""
    from jobs.storage import open_storage
    from jobs.storage.retention import sweep_if_due
    from services.tasks import job_store

    settings = get_settings()
    store = job_store(settings)
    storage = None  # opened in the loop: a store that cannot be opened yet must not end the job watchdog
    while not stop.wait(settings.watchdog_interval_s):
        try:
            if store.client.set(LOCK_KEY, "1", nx=True, ex=max(1, int(settings.watchdog_interval_s * 0.9))):
                sent = sweep(store, app, settings)
                if sent["analyses"] or sent["fusions"]:
                    log.warning("watchdog sweep", extra=sent)
                # retention, in this thread (never in a fusion task) and by one fusion worker per interval
                storage = storage or open_storage(settings)
                sweep_if_due(storage, settings)
        except Exception:  # noqa: BLE001 - Redis away: the next interval tries again
            log.warning("watchdog sweep failed", exc_info=True)


def start(app: Celery) -> threading.Event:
    """Start the watchdog thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(app, stop), name="job-watchdog", daemon=True).start()
    return stop
