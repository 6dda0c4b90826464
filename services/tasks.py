"""Celery tasks of the ensemble: one analysis task (routed to the modality's own queue) and the fusion callback.

A job is a chord: ``analyse_modality(job, m)`` for every requested modality, then ``fuse(outcomes, job)``
on the ``fusion`` queue. An analysis task never raises for a broken modality: it stores a ``failed``
series and returns, because a raising header task would cancel the chord and leave the other four
modalities' work unused. Tasks only pass storage paths and statuses (results by reference).

A task whose worker died is delivered again (``task_acks_late``); each delivery is counted in the job
store, and after ``EMPATHY_TASK_MAX_ATTEMPTS`` deliveries the modality is recorded as ``failed`` instead
of being run once more, so a video that crashes its worker every time cannot loop forever.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.celery_app import ANALYSE_TASK, FUSE_TASK, VISION_TASK, app
from shared.jobs import FINAL_STATES, MODALITY_FINAL, JobStore
from shared.modalities.frame_stream import Prepared
from shared.model_store import latest_version, load_metadata
from shared.pipeline import (
    STATUS_FAILED,
    ModalityResult,
    align_results,
    fuse_results,
    prepare_vision_together,
    run_modality,
    subject_notes,
)
from shared.results import build_document
from shared.settings import get_settings
from shared.storage import find_video, job_dir, load_series, save_series, series_paths, write_json

log = logging.getLogger(__name__)

_models: dict[str, tuple[int, dict[str, Any], Any]] = {}  # modality -> (version, metadata, predictor)


def job_store() -> JobStore:
    settings = get_settings()
    return JobStore.from_url(settings.redis_url, ttl_s=settings.job_ttl_s)


def model_for(modality: str) -> tuple[dict[str, Any], Any]:
    """Metadata and a gRPC predictor for the latest version on the models volume (cached per process).

    The predictor asks the model server for exactly that version, so preprocessing parameters and the
    served weights always belong together, also while a newer version is being rolled out.
    """
    from shared.serving_client import GrpcPredictor

    settings = get_settings()
    version = latest_version(Path(settings.models_dir) / modality)
    cached = _models.get(modality)
    if cached is None or cached[0] != version:
        metadata = load_metadata(settings.models_dir, modality, version)
        predictor = GrpcPredictor(settings.model_server_for(modality), modality, version=version,
                                  timeout_s=settings.model_server_timeout_s, retries=settings.model_server_retries,
                                  batch_size=settings.batch_size, backoff_s=settings.model_server_backoff_s)
        _models[modality] = cached = (version, metadata, predictor)
    return cached[1], cached[2]


@app.task(name=ANALYSE_TASK, bind=True)
def analyse_modality(self: Any, job_id: str, modality: str) -> dict[str, Any]:
    """Run one modality on a job's video and store its series; returns ``{modality, status, series}``."""
    return _analyse(job_id, modality, self.request.hostname or "")


def _analyse(job_id: str, modality: str, worker: str, prepared: Prepared | None = None) -> dict[str, Any]:
    """:func:`analyse_modality`'s work; ``prepared``: windows from a decode shared with other modalities."""
    settings = get_settings()
    store = job_store()
    directory = job_dir(settings.storage_dir, job_id)
    if not store.exists(job_id) or not directory.is_dir():
        log.info("job gone, skipping", extra={"job": job_id, "modality": modality})
        return {"modality": modality, "status": "cancelled", "series": None, "worker": worker}
    stored = stored_outcome(store, directory, job_id, modality)
    if stored is not None:  # a second delivery of a task that did finish: its result stands
        log.warning("duplicate delivery of a finished task", extra={"job": job_id, "modality": modality})
        return {**stored, "worker": worker}
    started = time.monotonic()
    attempt = store.start_attempt(job_id, modality)
    if attempt > settings.task_max_attempts:
        log.error("giving up on a task its workers keep dying on",
                  extra={"job": job_id, "modality": modality, "attempts": attempt - 1})
        result = ModalityResult(name=modality, values=np.zeros(0), missing=np.zeros(0, dtype=bool),
                                status=STATUS_FAILED, detail=f"gave up after {attempt - 1} deliveries: the worker "
                                f"stopped each time while analysing this video ({modality})")
        return _store_result(store, directory, job_id, result, worker)
    if attempt > 1:
        log.warning("task re-delivered", extra={"job": job_id, "modality": modality, "attempt": attempt})
    store.update_modality(job_id, modality, status="preparing", progress=0.01, worker=worker)

    def progress(name: str, stage: str, fraction: float) -> None:
        store.update_modality(job_id, name, status=stage, progress=fraction)

    try:
        subject = int(store.raw(job_id).get("subject") or settings.default_subject)
        transcript = directory / "transcript.json"
        metadata, predictor = model_for(modality)
        result = run_modality(modality, find_video(directory), subject=subject, predictor=predictor,
                              metadata=metadata, transcript=transcript if transcript.is_file() else None,
                              progress=progress, fps=settings.fps, prepared=prepared)
    except Exception as exc:  # noqa: BLE001 - no model, no video...: a failed modality, never a broken chord
        log.exception("analysis failed", extra={"job": job_id, "modality": modality})
        result = ModalityResult(name=modality, values=np.zeros(0), missing=np.zeros(0, dtype=bool),
                                status=STATUS_FAILED, detail=f"{type(exc).__name__}: {exc}",
                                seconds=time.monotonic() - started)
    result.detail = result.detail.replace(f"{directory}/", "")  # clients see "video.mp4: ...", not server paths
    return _store_result(store, directory, job_id, result, worker)


@app.task(name=VISION_TASK, bind=True)
def analyse_vision(self: Any, job_id: str, modalities: list[str]) -> list[dict[str, Any]]:
    """Several vision modalities of a job from one decode of its video (``EMPATHY_VISION_WORKER``).

    The windows come from :func:`shared.pipeline.prepare_vision_together` (what ``empathy analyze`` does);
    each modality is then predicted, stored and reported exactly as by :func:`analyse_modality`. A modality
    whose series an earlier delivery already stored is not prepared again, and a re-delivered task (its
    worker died) prepares each modality on its own, so the per-modality delivery count stops a video that
    kills its worker every time.
    """
    settings = get_settings()
    store = job_store()
    directory = job_dir(settings.storage_dir, job_id)
    worker = self.request.hostname or ""
    prepared: dict[str, Prepared] = {}
    todo = [m for m in modalities if store.exists(job_id) and directory.is_dir()
            and stored_outcome(store, directory, job_id, m) is None]
    if todo and store.start_attempt(job_id, "vision") == 1:
        try:
            subject = int(store.raw(job_id).get("subject") or settings.default_subject)
            metadata = {name: model_for(name)[0] for name in todo}
            for name in todo:
                store.update_modality(job_id, name, status="preparing", progress=0.01, worker=worker)
            prepared = prepare_vision_together(find_video(directory), todo, subject=subject, metadata=metadata,
                                               settings=settings)
        except Exception:  # noqa: BLE001 - each modality then prepares (and fails or not) on its own
            log.exception("shared vision decode failed", extra={"job": job_id, "modalities": todo})
    return [_analyse(job_id, name, worker, prepared.get(name)) for name in modalities]


def stored_outcome(store: JobStore, directory: Path, job_id: str, modality: str) -> dict[str, Any] | None:
    """The outcome of an earlier delivery that stored its series, if any.

    A task is delivered again when its worker dies, and, rarely, after a Redis restart or a visibility
    timeout shorter than the analysis. Returning what was stored (instead of running again) keeps a
    finished modality's result, and the chord counts each task once whatever it returns.
    """
    status = store.raw(job_id).get(f"{modality}.status")
    meta = series_paths(directory, modality)[1]
    if status in MODALITY_FINAL and meta.is_file():
        return {"modality": modality, "status": status, "series": str(meta)}
    return None


def _store_result(store: JobStore, directory: Path, job_id: str, result: ModalityResult,
                  worker: str) -> dict[str, Any]:
    """Save a modality's series and final status; the chord outcome of an analysis task."""
    modality = result.name
    if not store.exists(job_id) or not directory.is_dir():  # deleted while we worked
        return {"modality": modality, "status": "cancelled", "series": None, "worker": worker}
    path = save_series(directory, result)
    store.update_modality(job_id, modality, status=result.status, progress=1.0, detail=result.detail,
                          seconds=result.seconds)
    log.info("analysis stored", extra={"job": job_id, "modality": modality, "status": result.status,
                                        "seconds": round(result.seconds, 3)})
    return {"modality": modality, "status": result.status, "series": str(path), "worker": worker}


@app.task(name=FUSE_TASK, bind=True)
def fuse(self: Any, outcomes: list[dict[str, Any]], job_id: str) -> dict[str, Any]:
    """Chord callback: fuse the stored series, write ``result.json``, mark the job done (or failed)."""
    settings = get_settings()
    store = job_store()
    directory = job_dir(settings.storage_dir, job_id)
    worker = self.request.hostname or ""
    if not store.exists(job_id) or not directory.is_dir():
        return {"job": job_id, "state": "cancelled", "result": None, "worker": worker}
    raw = store.raw(job_id)
    if raw.get("state") in FINAL_STATES:  # fused already (a second delivery): the result stands
        return {"job": job_id, "state": raw["state"], "result": raw.get("result") or None, "worker": worker}
    outcomes = [o for item in outcomes for o in (item if isinstance(item, list) else [item])]  # vision: a list
    try:
        subject = int(raw.get("subject") or settings.default_subject)
        names = [m for m in raw.get("modalities", "").split(",") if m]
        stored = [o["modality"] for o in outcomes if o.get("series") and o["modality"] in names]
        results: dict[str, ModalityResult] = {}
        metadata: dict[str, dict[str, Any]] = {}
        for name in stored:
            results[name] = load_series(directory, name)
            if results[name].model_version is not None:
                metadata[name] = load_metadata(settings.models_dir, name, results[name].model_version)
        results = align_results(results, names)
        fusion = fuse_results(results, metadata, subject, settings=settings)
        created = float(raw.get("created") or time.time())
        document = build_document(fusion=fusion, modalities=results, subject=subject, fps=settings.fps,
                                  video=raw.get("filename", ""), weights_spec=settings.fusion_weights,
                                  cutoff_hz=settings.fusion_cutoff_hz, job_id=job_id,
                                  seconds=time.time() - created, notes=subject_notes(metadata, subject))
        result_path = directory / "result.json"
        write_json(result_path, document)
    except Exception as exc:  # noqa: BLE001 - the job must end in a state a client can read
        log.exception("fusion failed", extra={"job": job_id})
        store.finish(job_id, error=f"{type(exc).__name__}: {exc}", worker=worker)
        return {"job": job_id, "state": "failed", "result": None, "worker": worker}
    store.finish(job_id, result=str(result_path), worker=worker, used=fusion.used)
    log.info("job done", extra={"job": job_id, "used": fusion.used, "n_frames": int(fusion.valence.size)})
    return {"job": job_id, "state": "done", "result": str(result_path), "worker": worker}
