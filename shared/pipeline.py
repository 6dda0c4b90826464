"""The one inference pipeline: video -> per-modality valence -> fusion.

Workers (one modality each, a gRPC predictor to their model server) call :func:`run_modality`; the fusion
worker calls :func:`shared.fusion.fuse` on what they stored; ``empathy analyze`` calls
:func:`analyze_video`, which runs the very same steps in one process with in-process predictors. Keeping
a single path means a result from the ensemble and from ``analyze`` can only differ by the model server.
The one difference in *how* (not what) is decoding: ``analyze`` decodes the video once for the face,
landmarks and body modalities and feeds each the same frames (:mod:`shared.modalities.frame_stream`), where
each worker of the ensemble decodes once for its own modality.

Nothing here reads the environment: every function takes the :class:`shared.settings.Settings` its caller
read at its edge (``empathy analyze``, a Celery task, training) and hands the values down, to the modalities
as parameters (:meth:`Modality.runtime_params <shared.modalities.base.Modality.runtime_params>`,
:func:`inference_params`).

Statuses of a modality's result: :mod:`shared.values`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.fusion import FusionResult, fuse_with, load_fusion_model, resolve
from shared.media import MediaError, NoAudioStreamError, NoVideoStreamError
from shared.modalities.base import get_modality
from shared.modalities.frame_stream import FrameConsumer, Prepared, feed_together
from shared.postprocess import label_range, postprocess, stats_for_subject
from shared.registry import entry
from shared.settings import MODALITIES, Settings
from shared.values import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_UNAVAILABLE,
    ModalityResult,
    PipelineOptions,
    empty_result,
)

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = PipelineOptions()  # every option as its setting says
# progress(modality, stage, fraction of that modality done in [0, 1])
ProgressCallback = Callable[[str, str, float], None]

class Predictor(Protocol):
    """Structural type of ``serving.client`` predictors: ``predict(inputs) -> (n_windows, ...)``."""

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class AnalysisResult:
    video: str
    subject: int
    fps: float
    n_frames: int
    modalities: dict[str, ModalityResult]
    fusion: FusionResult
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def inference_params(name: str, metadata: Mapping[str, Any], settings: Settings,
                     options: PipelineOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """The model's preprocessing parameters, then the modality's runtime ones and its inference-only ones
    (:meth:`~shared.modalities.base.Modality.inference_params`: the job's listener region, every k-th frame...)."""
    modality = get_modality(name)
    return {**(metadata.get("preprocessing") or {}), **modality.runtime_params(settings),
            **modality.inference_params(settings, options)}


def run_modality(name: str, video: Path | str, *, subject: int, predictor: Predictor, metadata: Mapping[str, Any],
                 settings: Settings, transcript: Path | str | None = None,
                 progress: ProgressCallback | None = None, prepared: Prepared | None = None,
                 options: PipelineOptions = DEFAULT_OPTIONS) -> ModalityResult:
    """Preprocess -> predict -> back onto the 25 fps grid -> post-process; never raises for bad input.

    Every failure becomes a result with a status and a readable detail, because one broken modality
    must not sink a job that four others can still answer. ``prepared``: windows (or the error) already
    made by a decode shared with other modalities (:func:`prepare_vision_together`); its time counts here.
    """
    report = progress or (lambda _name, _stage, _fraction: None)
    started = time.monotonic() - (prepared.seconds if prepared is not None else 0.0)
    version = metadata.get("version")
    try:
        modality = get_modality(name)
        if prepared is None:
            report(name, "preparing", 0.05)
            windows = modality.prepare(Path(video), subject=subject,
                                       transcript=Path(transcript) if transcript else None,
                                       params=inference_params(name, metadata, settings, options))
        elif prepared.error is not None:
            raise prepared.error
        else:
            windows = prepared.windows
        notes = list(windows.info.get("notes") or [])
        if len(windows) == 0 or windows.missing.all():
            result = empty_result(name, STATUS_UNAVAILABLE,
                            windows.info.get("unavailable") or f"{name}: nothing usable in this video",
                            time.monotonic() - started, windows.n_frames)
            result.model_version, result.notes = version, notes
            return result
        report(name, "predicting", 0.6)
        predictions = predictor.predict(windows.inputs)
        report(name, "postprocessing", 0.9)
        frames = np.asarray(modality.to_frames(predictions, windows), dtype=np.float64)
        frames[windows.missing] = np.nan
        values = postprocess(frames, metadata, subject, fps=settings.fps)
    except (NoAudioStreamError, NoVideoStreamError) as exc:
        log.info("modality unavailable", extra={"modality": name, "video": str(video), "reason": str(exc)})
        return empty_result(name, STATUS_UNAVAILABLE, str(exc), time.monotonic() - started)
    except MediaError as exc:
        log.warning("modality failed on media", extra={"modality": name, "video": str(video), "error": str(exc)})
        return empty_result(name, STATUS_FAILED, str(exc), time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - reported per modality, never fatal to the job
        log.exception("modality failed", extra={"modality": name, "video": str(video)})
        return empty_result(name, STATUS_FAILED, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    missing = ~np.isfinite(values)
    status = STATUS_UNAVAILABLE if missing.all() else STATUS_OK
    seconds = time.monotonic() - started
    log.info("modality done", extra={"modality": name, "status": status, "seconds": round(seconds, 3),
                                      "n_frames": int(values.size), "missing": int(missing.sum())})
    return ModalityResult(name=name, values=values, missing=missing, status=status,
                          detail="" if status == STATUS_OK else f"{name}: nothing usable in this video",
                          seconds=seconds, model_version=version, notes=notes)


def prepare_vision_together(video: Path | str, names: Sequence[str], *, subject: int,
                            metadata: Mapping[str, Mapping[str, Any]], settings: Settings,
                            options: PipelineOptions = DEFAULT_OPTIONS) -> dict[str, Prepared]:
    """Windows of several vision modalities from one decode of ``video`` (see :mod:`shared.modalities.frame_stream`).

    Modalities searching the same listener region share a decode (normally all of them: their models were
    trained on one data set); one whose region differs gets a decode of its own.
    """
    groups: dict[Any, dict[str, FrameConsumer]] = {}
    failed: dict[str, Prepared] = {}
    for name in names:
        started = time.monotonic()
        try:
            consumer = get_modality(name).frame_consumer(Path(video), subject=subject,
                                                         params=inference_params(name, metadata[name], settings,
                                                                                 options))
            groups.setdefault(consumer.region.box, {})[name] = consumer
        except Exception as exc:  # noqa: BLE001 - e.g. not a video: reported by run_modality like its own error
            failed[name] = Prepared(windows=None, error=exc, seconds=time.monotonic() - started)
    prepared = dict(failed)
    for region, consumers in groups.items():
        prepared.update(feed_together(video, consumers, region, threads=int(settings.decode_threads)))
    return prepared


def align_results(results: Mapping[str, ModalityResult], names: Sequence[str]) -> dict[str, ModalityResult]:
    """Every requested modality with a series of the common length (all-missing where it has none).

    A modality that failed before it knew the video's length has no frames; fusion and the result
    document need one series per requested modality, so it becomes an all-NaN series of that length.
    """
    n_frames = max((r.values.size for r in results.values()), default=0)
    aligned: dict[str, ModalityResult] = {}
    for name in names:
        result = results.get(name)
        if result is None:
            result = empty_result(name, STATUS_FAILED, "no result was stored for this modality", 0.0)
        if result.values.size != n_frames:
            padded = empty_result(name, result.status, result.detail, result.seconds, n_frames)
            padded.model_version, padded.notes = result.model_version, result.notes
            result = padded
        aligned[name] = result
    return aligned


def fusion_stats(metadata: Mapping[str, Mapping[str, Any]], subject: int) -> dict[str, float] | None:
    """The subject's label statistics for the fused curve.

    Every model of one ensemble is trained on the same labels, so their ``subject_stats`` agree; the first
    model (in the canonical modality order) that records them is used.
    """
    for name in MODALITIES:
        table = (metadata.get(name) or {}).get("subject_stats")
        if table:
            return stats_for_subject(table, subject)
    return None


def subject_notes(metadata: Mapping[str, Mapping[str, Any]], subject: int) -> list[str]:
    """A note when no model knows the listener: their curve is re-scaled with the pooled statistics."""
    tables = [meta.get("subject_stats") or {} for meta in metadata.values()]
    if subject != 0 and tables and not any(str(subject) in table for table in tables):
        return [f"subject {subject} is unknown to the models: re-scaled with the statistics of all training "
                "listeners (as subject 0)"]
    return []


def listener_notes(results: Mapping[str, ModalityResult]) -> list[str]:
    """The modalities' notes about the listener (region searched, ambiguity), each sentence once, in order."""
    notes: list[str] = []
    for result in results.values():
        for note in result.notes:
            if note and note not in notes:
                notes.append(note)
    return notes


def fuse_results(results: Mapping[str, ModalityResult], metadata: Mapping[str, Mapping[str, Any]], subject: int, *,
                 settings: Settings, weights_spec: str | None = None, cutoff_hz: float | None = None,
                 models_dir: Path | str | None = None) -> FusionResult:
    """Fusion as configured (shared by the fusion worker, ``analyze`` and ``evaluate``); the one place a
    fusion specification is resolved.

    ``weights_spec``: ``paper``, ``ccc``, ``learned`` or explicit weights (empty or None: ``EMPATHY_FUSION_WEIGHTS``);
    the cut-off, band calibration and learned coefficients come from the fusion model under ``models_dir``
    (default ``EMPATHY_MODELS_DIR``) when one exists; ``cutoff_hz`` > 0 (or ``EMPATHY_FUSION_CUTOFF_HZ`` > 0)
    overrides the validated cut-off. The result records all of it (:class:`shared.fusion.FusionResult`);
    every fallback, and a listener the models do not know (:func:`subject_notes`), is named in its notes.
    """
    spec = (weights_spec or settings.fusion_weights).strip()
    model = load_fusion_model(settings.models_dir if models_dir is None else models_dir)
    plan = resolve(spec, metadata, model, cutoff_hz=settings.fusion_cutoff_hz if cutoff_hz is None else cutoff_hz)
    plan.notes[:0] = subject_notes(metadata, subject)
    return fuse_with(results, plan, subject_stats=fusion_stats(metadata, subject), fps=settings.fps,
                     min_cycles=settings.fusion_min_cycles, label_range=fusion_label_range(metadata))


def fusion_label_range(metadata: Mapping[str, Mapping[str, Any]]) -> tuple[float, float]:
    """The label range of the fused curve: that of the first model (canonical order) recording one, else [-1, 1]."""
    for name in MODALITIES:
        if (metadata.get(name) or {}).get("label_range"):
            return label_range(metadata[name])
    return label_range(None)


def analyze_video(video: Path | str, *, subject: int | None = None, modalities: Sequence[str] | None = None,
                  predictors: Mapping[str, Predictor], metadata: Mapping[str, Mapping[str, Any]],
                  models_dir: Path | str | None = None, transcript: Path | str | None = None,
                  cutoff_hz: float | None = None, progress: ProgressCallback | None = None, settings: Settings,
                  options: PipelineOptions = DEFAULT_OPTIONS) -> AnalysisResult:
    """Run every requested modality on ``video`` in this process, then fuse.

    ``predictors`` + ``metadata``: modality -> loaded model (``serving.client.open_models``); ``models_dir``:
    where the fusion model is (default ``EMPATHY_MODELS_DIR``). ``settings``: what
    the caller read at its edge (``empathy analyze``: the environment). Raises :class:`shared.fusion.FusionError`
    when no modality produced anything.
    """
    names = list(modalities or MODALITIES)
    for name in names:
        if name not in MODALITIES:
            raise ValueError(f"unknown modality {name!r}; expected some of {', '.join(MODALITIES)}")
    subject = settings.default_subject if subject is None else int(subject)
    started = time.monotonic()
    results: dict[str, ModalityResult] = {}
    together = [name for name in names if entry(name).vision]
    prepared: dict[str, Prepared] = {}
    if len(together) > 1:  # one decode for all of them, instead of one each
        for name in together:
            if progress:
                progress(name, "preparing", 0.05)
        prepared = prepare_vision_together(video, together, subject=subject, metadata=metadata, settings=settings,
                                           options=options)
    for name in names:
        results[name] = run_modality(name, video, subject=subject, predictor=predictors[name],
                                     metadata=metadata[name], settings=settings, transcript=transcript,
                                     progress=progress, prepared=prepared.get(name), options=options)
        if progress:
            progress(name, results[name].status, 1.0)
    results = align_results(results, names)
    n_frames = next(iter(results.values())).values.size
    fusion = fuse_results(results, metadata, subject, settings=settings, weights_spec=options.fusion,
                          cutoff_hz=cutoff_hz, models_dir=models_dir)
    return AnalysisResult(video=str(video), subject=subject, fps=float(settings.fps), n_frames=n_frames,
                          modalities=results, fusion=fusion, seconds=time.monotonic() - started)
