"""Celery tasks of the ensemble: one analysis task (routed to the modality's own queue) and the fusion callback.

A job is a chord: ``analyze_modality(job, m)`` for every requested modality, then ``fuse(outcomes, job)``
on the ``fusion`` queue. An analysis task never raises for a broken modality: it stores a ``failed``
series and returns, because a raising header task would cancel the chord and leave the other four
modalities' work unused. Tasks only pass blob names and statuses (results by reference): a task reads the
upload through the job storage (:mod:`jobs.files`) into a private temporary copy, never another process's path.

A task whose worker died is delivered again (``task_acks_late``, or sooner by the watchdog, which sees its
heartbeat stop: :mod:`services.watchdog`); each delivery is counted in the job store, and after
``EMPATHY_TASK_MAX_ATTEMPTS`` deliveries the modality is recorded as ``failed`` instead of being run once
more, so a video that crashes its worker every time cannot loop forever.

Outages inside a task are waited out, within bounds, never turned into a lost job: job-store calls retry
while Redis is away (``EMPATHY_REDIS_OUTAGE_S``), and a model server that is restarting or still loading is
waited for until it reports the model AVAILABLE (``EMPATHY_MODEL_LOAD_TIMEOUT_S``) before the prediction is
tried again. An analysis task returns exactly the same outcome when a duplicate delivery finds the stored
result, so Celery's chord (a Redis set of the parts' returns) counts it once.

Each task reads the settings once, when it starts, and hands them down (job store, model, media limits,
pipeline); the job's request (subject, modalities, fusion, listener...) is read back typed
(:meth:`jobs.request.JobRequest.from_hash`), exactly as the gateway validated it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jobs.files import JobFiles, LocalInputs, series_name
from jobs.request import JobRequest
from jobs.store import FINAL_STATES, MODALITY_FINAL, JobStore
from services.celery_app import ANALYZE_TASK, FUSE_TASK, VISION_TASK, app
from serving.model_store import latest_version, load_metadata
from shared.media import MediaError, check_limits, probe
from shared.modalities.frame_stream import Prepared
from shared.pipeline import (
    align_results,
    fuse_results,
    listener_notes,
    prepare_vision_together,
    run_modality,
)
from shared.results import build_document
from shared.settings import Settings, get_settings
from shared.values import STATUS_FAILED, ModalityResult

if TYPE_CHECKING:
    from serving.client import Model

log = logging.getLogger(__name__)

_models: dict[str, Model] = {}  # modality -> the model its tasks use (see model_for)


def job_store(settings: Settings) -> JobStore:
    """The workers' job store: its calls wait through a Redis outage (``EMPATHY_REDIS_OUTAGE_S``)."""
    return JobStore.from_url(settings.redis_url, ttl_s=settings.job_ttl_s, outage_s=settings.redis_outage_s)


def model_for(modality: str, settings: Settings) -> Model:
    """The latest version on the models volume, its metadata and a gRPC predictor for exactly it.

    Opened by :func:`serving.client.open_model` and kept per process while that version stays the
    latest, so a task reuses the predictor's channel; a newly published version is picked up by the next task.
    """
    from serving.client import open_model

    version = latest_version(Path(settings.models_dir) / modality)
    cached = _models.get(modality)
    if cached is None or cached.version != version:
        _models[modality] = cached = open_model(modality, settings, version=version)
    return cached


@contextmanager
def heartbeat(store: JobStore, job_id: str, modality: str, lease_s: float) -> Iterator[None]:
    """Refresh the modality's heartbeat every ``lease_s / 6`` while the body runs (the watchdog's lease)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_s / 6):
            try:
                store.heartbeat(job_id, modality)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                log.warning("heartbeat not written", extra={"job": job_id, "modality": modality})

    thread = threading.Thread(target=beat, name=f"heartbeat-{modality}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _failed(modality: str, detail: str, seconds: float = 0.0) -> ModalityResult:
    return ModalityResult(name=modality, values=np.zeros(0), missing=np.zeros(0, dtype=bool), status=STATUS_FAILED,
                          detail=detail, seconds=seconds)


def check_media(video: Path, settings: Settings) -> None:
    """The frame-size and pixel-rate limits the gateway applies at upload, again here (from headers only)."""
    check_limits(probe(video, fps=settings.fps), max_frame_size=settings.max_frame_size,
                 max_pixel_rate=settings.max_pixel_rate, fps=settings.fps)


@app.task(name=ANALYZE_TASK, bind=True)
def analyze_modality(self: Any, job_id: str, modality: str) -> dict[str, Any]:
    """Run one modality on a job's video and store its series; returns ``{modality, status, series}``."""
    return _analyze(job_id, modality, self.request.hostname or "", get_settings())


def _analyze(job_id: str, modality: str, worker: str, settings: Settings, prepared: Prepared | None = None,
             inputs: LocalInputs | None = None) -> dict[str, Any]:
    """:func:`analyze_modality`'s work; ``prepared``: windows from a decode shared with other modalities;
    ``inputs``: local copies of the job's inputs already made (else made here, and deleted after)."""
    store = job_store(settings)
    files = JobFiles.open(settings, job_id)
    if not store.exists(job_id) or not files.exists():
        log.info("job gone, skipping", extra={"job": job_id, "modality": modality})
        return {"modality": modality, "status": "cancelled", "series": None}
    stored = stored_outcome(store, files, modality)
    if stored is not None:  # a second delivery of a task that did finish: its result, exactly as returned before
        log.warning("duplicate delivery of a finished task", extra={"job": job_id, "modality": modality})
        return stored
    started = time.monotonic()
    attempt = store.start_attempt(job_id, modality)
    if attempt > settings.task_max_attempts:
        log.error("giving up on a task its workers keep dying on",
                  extra={"job": job_id, "modality": modality, "attempts": attempt - 1})
        result = _failed(modality, f"gave up after {attempt - 1} deliveries: the worker stopped each time while "
                                   f"analysing this video ({modality})")
        return _store_result(store, files, result)
    if attempt > 1:
        log.warning("task re-delivered", extra={"job": job_id, "modality": modality, "attempt": attempt})
    store.update_modality(job_id, modality, status="preparing", progress=0.01, worker=worker)
    store.heartbeat(job_id, modality)

    def progress(name: str, stage: str, fraction: float) -> None:
        store.update_modality(job_id, name, status=stage, progress=fraction)

    with heartbeat(store, job_id, modality, settings.task_lease_s), ExitStack() as stack:
        folder = ""
        try:
            request = JobRequest.from_hash(store.raw(job_id)).resolve(settings)
            if inputs is None:
                inputs = stack.enter_context(files.local_inputs())
            folder = f"{inputs.video.parent}/"
            if prepared is None:  # windows from the shared decode were made after analyze_vision checked it
                check_media(inputs.video, settings)
            model = model_for(modality, settings)
            result = run_modality(modality, inputs.video, subject=request.subject, predictor=model.predictor,
                                  metadata=model.metadata, settings=settings, transcript=inputs.transcript,
                                  progress=progress, options=request.pipeline_options(), prepared=prepared)
        except MediaError as exc:
            result = _failed(modality, str(exc), time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - no model, no video...: a failed modality, never a broken chord
            log.exception("analysis failed", extra={"job": job_id, "modality": modality})
            result = _failed(modality, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    if folder:
        result.detail = result.detail.replace(folder, "")  # clients see "video.mp4: ...", not server paths
    return _store_result(store, files, result)


@app.task(name=VISION_TASK, bind=True)
def analyze_vision(self: Any, job_id: str, modalities: list[str]) -> list[dict[str, Any]]:
    """Several vision modalities of a job from one decode of its video (``EMPATHY_VISION_WORKER``).

    The windows come from :func:`shared.pipeline.prepare_vision_together` (what ``empathy analyze`` does);
    each modality is then predicted, stored and reported exactly as by :func:`analyze_modality`. A modality
    whose series an earlier delivery already stored is not prepared again, and a re-delivered task (its
    worker died) prepares each modality on its own, so the per-modality delivery count stops a video that
    kills its worker every time.
    """
    settings = get_settings()
    store = job_store(settings)
    files = JobFiles.open(settings, job_id)
    worker = self.request.hostname or ""
    prepared: dict[str, Prepared] = {}
    todo = [m for m in modalities if store.exists(job_id) and files.exists()
            and stored_outcome(store, files, m) is None]
    with ExitStack() as stack:
        inputs = None
        if todo and store.start_attempt(job_id, "vision") == 1:
            try:
                request = JobRequest.from_hash(store.raw(job_id)).resolve(settings)
                metadata = {name: model_for(name, settings).metadata for name in todo}
                for name in todo:
                    store.update_modality(job_id, name, status="preparing", progress=0.01, worker=worker)
                with ExitStack() as beats:  # the shared decode is these modalities' work: the watchdog sees them
                    for name in todo:
                        beats.enter_context(heartbeat(store, job_id, name, settings.task_lease_s))
                    inputs = stack.enter_context(files.local_inputs())  # one copy for every modality
                    check_media(inputs.video, settings)
                    prepared = prepare_vision_together(inputs.video, todo, subject=request.subject,
                                                       metadata=metadata, settings=settings,
                                                       options=request.pipeline_options())
            except Exception:  # noqa: BLE001 - each modality then prepares (and fails or not) on its own
                log.exception("shared vision decode failed", extra={"job": job_id, "modalities": todo})
        return [_analyze(job_id, name, worker, settings, prepared.get(name), inputs) for name in modalities]


def stored_outcome(store: JobStore, files: JobFiles, modality: str) -> dict[str, Any] | None:
    """The outcome of an earlier delivery that stored its series, if any.

    A task is delivered again when its worker dies, and, rarely, after a Redis restart or a visibility
    timeout shorter than the analysis. Returning what was stored (instead of running again) keeps a
    finished modality's result, and the chord counts each task once whatever it returns.
    """
    status = store.raw(files.job_id).get(f"{modality}.status")
    if status in MODALITY_FINAL and files.has_series(modality):
        return {"modality": modality, "status": status, "series": series_name(modality)}
    return None


def _store_result(store: JobStore, files: JobFiles, result: ModalityResult) -> dict[str, Any]:
    """Save a modality's series and final status; the chord outcome of an analysis task.

    The outcome holds only what a duplicate delivery returns too (:func:`stored_outcome`): the chord's
    set of returns then sees one member per task however often it ran.
    """
    modality, job_id = result.name, files.job_id
    if not store.exists(job_id) or not files.exists():  # deleted while we worked
        return {"modality": modality, "status": "cancelled", "series": None}
    name = files.save_series(result)
    store.update_modality(job_id, modality, status=result.status, progress=1.0, detail=result.detail,
                          seconds=result.seconds)
    log.info("analysis stored", extra={"job": job_id, "modality": modality, "status": result.status,
                                        "seconds": round(result.seconds, 3)})
    return {"modality": modality, "status": result.status, "series": name}


@app.task(name=FUSE_TASK, bind=True)
def fuse(self: Any, outcomes: list[dict[str, Any]], job_id: str) -> dict[str, Any]:
    """Chord callback: fuse the stored series, write ``result.json``, mark the job done (or failed)."""
    settings = get_settings()
    store = job_store(settings)
    files = JobFiles.open(settings, job_id)
    worker = self.request.hostname or ""
    if not store.exists(job_id) or not files.exists():
        return {"job": job_id, "state": "cancelled", "result": None, "worker": worker}
    raw = store.raw(job_id)
    if raw.get("state") in FINAL_STATES:  # fused already (a second delivery): the result stands
        return {"job": job_id, "state": raw["state"], "result": raw.get("result") or None, "worker": worker}
    outcomes = [o for item in outcomes for o in (item if isinstance(item, list) else [item])]  # vision: a list
    request = JobRequest.from_hash(raw).resolve(settings)
    names = list(request.modalities)
    reported = {o.get("modality") for o in outcomes if o.get("status") in MODALITY_FINAL}
    pending = [m for m in names if m not in reported and raw.get(f"{m}.status") not in MODALITY_FINAL]
    if pending:  # a modality neither reported nor finished: the watchdog fuses once every modality is done
        log.warning("fusion asked before every modality finished", extra={"job": job_id, "pending": pending})
        return {"job": job_id, "state": "waiting", "result": None, "worker": worker}
    try:
        subject = request.subject
        stored = [o["modality"] for o in outcomes if o.get("series") and o["modality"] in names]
        results: dict[str, ModalityResult] = {}
        metadata: dict[str, dict[str, Any]] = {}
        for name in stored:
            results[name] = files.load_series(name)
            if results[name].model_version is not None:
                metadata[name] = load_metadata(settings.models_dir, name, results[name].model_version)
        results = align_results(results, names)
        fusion = fuse_results(results, metadata, subject, settings=settings,
                              weights_spec=request.pipeline_options().fusion)
        created = float(raw.get("created") or time.time())
        document = build_document(fusion=fusion, modalities=results, subject=subject, fps=settings.fps,
                                  video=raw.get("filename", ""), job_id=job_id, seconds=time.time() - created,
                                  notes=listener_notes(results))
        result_name = files.write_result(document)
    except Exception as exc:  # noqa: BLE001 - the job must end in a state a client can read
        log.exception("fusion failed", extra={"job": job_id})
        store.finish(job_id, error=f"{type(exc).__name__}: {exc}", worker=worker)
        return {"job": job_id, "state": "failed", "result": None, "worker": worker}
    store.finish(job_id, result=result_name, worker=worker, used=fusion.used)
    log.info("job done", extra={"job": job_id, "used": fusion.used, "n_frames": int(fusion.valence.size)})
    return {"job": job_id, "state": "done", "result": result_name, "worker": worker}
