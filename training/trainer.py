"""The one training loop every modality uses: prepare -> fit -> choose the low-pass -> export a version.

Steps (paper Sec. II, with the authors' post-processing):

1. Split the clips by story (validation = Story 2 by default). Preparation is the modality's own
   ``prepare`` -- the very function inference runs -- with ``known_subjects`` (the training subjects) added
   to its parameters; statistics the preprocessing needs (audio's z-normalisation) come from the training
   clips only (``fit_params``) and are applied to their windows (``apply_fitted``): each clip is prepared once.
2. Fit with loss 1 - CCC and Adam. After each epoch the model predicts every validation video, the
   predictions go back onto the 25 fps grid (``to_frames``) and the mean per-video CCC is the early-stopping
   criterion; the best epoch's weights are restored at the end.
3. Choose the low-pass cut-off on the validation videos: for each cut-off of a grid, zero-phase filter and
   re-scale each prediction (:func:`shared.postprocess.smooth_and_rescale`, the inference code) and keep the
   cut-off with the best mean CCC. The re-scaling here uses statistics of the *training* labels only, so the
   reported ``val_ccc_filtered`` is honest; the statistics exported for inference pool training and
   validation labels per subject, as the authors did (the validation labels are then training data too).
4. Export ``models/<modality>/<version>/`` through :mod:`serving.model_store` (staging + atomic rename),
   after checking that the SavedModel gives the Keras model's numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from serving.model_store import publish_version, staging_dir
from shared.ccc import ccc
from shared.crops import check_listener_spec
from shared.data import Clip, check_labels, discover, split_by_story
from shared.modalities.base import Modality, Windows, get_modality, window_labels
from shared.postprocess import GLOBAL_STATS_KEY, labels_range, smooth_and_rescale, stats_for_subject
from shared.registry import entry
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

CUTOFF_GRID_HZ: tuple[float, ...] = (0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)
SERVING_OUTPUT = "output_0"  # the name keras' model.export gives the single output of serving_default


class TrainingError(RuntimeError):
    """The data cannot train this modality (no clips, no labels, no usable windows...)."""


@dataclass
class PreparedClip:
    """One clip after preparation: its windows, per-frame labels and per-window targets."""

    clip: Clip
    windows: Windows
    labels: np.ndarray
    targets: np.ndarray


@dataclass
class TrainResult:
    version_dir: Path
    metadata: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    model: Any = None  # the trained keras model (best epoch), for callers that keep working in-process
    validation: list[PreparedClip] = field(default_factory=list)


# ----------------------------------------------------------------------------------- data
def prepare_clips(modality: Modality, clips: Sequence[Clip], params: dict[str, Any]) -> list[PreparedClip]:
    """``prepare`` every clip and read its targets with ``window_labels`` (the only label path)."""
    prepared = []
    for clip in clips:
        started = time.monotonic()
        windows = modality.prepare(clip.video, subject=clip.subject, transcript=clip.transcript, params=params)
        labels = check_labels(clip, windows.n_frames)
        targets = window_labels(labels, windows) if len(windows) else np.zeros((0,), np.float32)
        prepared.append(PreparedClip(clip, windows, labels, targets))
        logger.info("clip prepared", extra={"clip": clip.name, "windows": len(windows),
                                            "seconds": round(time.monotonic() - started, 2)})
    return prepared


def prepare_data(modality: Modality, train_clips: Sequence[Clip], val_clips: Sequence[Clip],
                 params: dict[str, Any]) -> tuple[dict[str, Any], list[PreparedClip], list[PreparedClip]]:
    """Every clip prepared once: the training clips, the parameters fitted on them, then the validation clips.

    ``fit_params`` sees the training clips only; their windows then get the fitted parameters through
    ``apply_fitted`` instead of a second ``prepare`` (decoding and tracking a video is most of the cost),
    and the validation clips are prepared with the fitted parameters directly, as inference will be.
    """
    train_data = prepare_clips(modality, train_clips, params)
    params = modality.fit_params([x.windows for x in train_data], params)
    train_data = [replace(x, windows=modality.apply_fitted(x.windows, params)) for x in train_data]
    return params, train_data, prepare_clips(modality, val_clips, params)


def stack_inputs(prepared: Sequence[PreparedClip]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All windows of all clips as one array per input, and the matching targets."""
    from training.batches import concat_windows

    usable = [p for p in prepared if len(p.windows)]
    if not usable:
        raise TrainingError("no clip produced a single window")
    names = list(usable[0].windows.inputs)
    # Lazy windows (full body: 1 MB each) are concatenated lazily and built batch by batch (training.batches).
    inputs = {name: concat_windows([p.windows.inputs[name] for p in usable]) for name in names}
    targets = np.concatenate([p.targets for p in usable]).astype(np.float32)
    return inputs, targets


def predict_frames(model: Any, modality: Modality, prepared: PreparedClip, batch_size: int) -> np.ndarray:
    """One clip's raw prediction on the 25 fps grid (NaN where the modality cannot see)."""
    if len(prepared.windows) == 0:
        return np.full(prepared.windows.n_frames, np.nan)
    from training.batches import is_lazy, predict_in_batches

    if is_lazy(prepared.windows.inputs):
        outputs = predict_in_batches(model, prepared.windows.inputs, batch_size)
    else:
        outputs = model.predict(prepared.windows.inputs, batch_size=batch_size, verbose=0)
    frames = np.asarray(modality.to_frames(np.asarray(outputs), prepared.windows), dtype=np.float64)
    frames[prepared.windows.missing] = np.nan
    return frames


def frame_ccc(labels: np.ndarray, frames: np.ndarray) -> float:
    """CCC over the frames the modality saw; 0 when it saw none (as the challenge scores a constant)."""
    seen = np.isfinite(frames)
    return ccc(labels[seen], frames[seen]) if seen.sum() > 1 else 0.0


def subject_stats(prepared: Sequence[PreparedClip]) -> dict[str, dict[str, float]]:
    """Per-subject mean/std of the labels of ``prepared`` (stories pooled) and the pooled ``global`` entry."""
    by_subject: dict[int, list[np.ndarray]] = {}
    for p in prepared:
        by_subject.setdefault(p.clip.subject, []).append(p.labels)
    stats = {str(s): {"mean": float(np.concatenate(v).mean()), "std": float(np.concatenate(v).std())}
             for s, v in sorted(by_subject.items())}
    pooled = np.concatenate([p.labels for p in prepared])
    stats[GLOBAL_STATS_KEY] = {"mean": float(pooled.mean()), "std": float(pooled.std())}
    return stats


def dataset_hash(clips: Sequence[Clip]) -> str:
    """Fingerprint of the training data: names, labels and transcripts in full, videos by size and their
    first/last MiB (hashing gigabytes of video for every training run would dominate its cost)."""
    digest = hashlib.sha256()
    for clip in sorted(clips, key=lambda c: (c.subject, c.story)):
        digest.update(clip.name.encode())
        for path in (clip.labels, clip.transcript):
            digest.update(path.read_bytes() if path is not None else b"-")
        size = clip.video.stat().st_size
        digest.update(str(size).encode())
        with clip.video.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def code_version() -> str:
    """``git describe`` of the source tree when it is a checkout, else the installed package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True)
        if out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"package:{version('empathic-fusion')}"
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------------- fitting
def _early_stopping_callback(modality: Modality, val: Sequence[PreparedClip], batch_size: int, patience: int,
                             history: list[dict[str, float]]) -> Any:
    import keras

    class ValidationCCC(keras.callbacks.Callback):
        """Early stopping on the mean per-video validation CCC, restoring the best epoch's weights."""

        def __init__(self) -> None:
            super().__init__()
            self.best = -np.inf
            self.best_epoch = -1
            self.best_weights: list[np.ndarray] | None = None
            self.wait = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            scores = [frame_ccc(p.labels, predict_frames(self.model, modality, p, batch_size)) for p in val]
            score = float(np.mean(scores))
            history.append({"epoch": epoch + 1, "loss": float((logs or {}).get("loss", np.nan)), "val_ccc": score})
            logger.info("epoch done", extra={"modality": modality.name, "epoch": epoch + 1,
                                             "loss": round(float((logs or {}).get("loss", np.nan)), 4),
                                             "val_ccc": round(score, 4)})
            if score > self.best + 1e-4:
                self.best, self.best_epoch, self.wait = score, epoch + 1, 0
                self.best_weights = self.model.get_weights()
            else:
                self.wait += 1
                if self.wait >= patience:
                    self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return ValidationCCC()


def choose_cutoff(val_frames: Sequence[tuple[PreparedClip, np.ndarray]], stats: dict[str, dict[str, float]],
                  grid: Sequence[float] = CUTOFF_GRID_HZ, fps: float = 25.0) -> tuple[float, dict[str, float]]:
    """The cut-off maximising mean validation CCC after low-pass + re-scaling (first one on ties)."""
    scores: dict[str, float] = {}
    for cutoff in grid:
        values = []
        for prepared, frames in val_frames:
            post = smooth_and_rescale(frames, cutoff_hz=cutoff, stats=stats_for_subject(stats, prepared.clip.subject),
                                      fps=fps)
            values.append(frame_ccc(prepared.labels, post))
        scores[str(cutoff)] = float(np.mean(values))
    best = max(grid, key=lambda c: scores[str(c)])
    return float(best), scores


def describe_inputs(inputs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {name: {"shape": [None, *array.shape[1:]], "dtype": str(array.dtype)} for name, array in inputs.items()}


def export_model(model: Any, models_dir: Path | str, modality: str, metadata: dict[str, Any],
                 check_inputs: dict[str, np.ndarray]) -> Path:
    """Export a SavedModel (``serving_default``), verify it reproduces the Keras outputs, publish it."""
    import tensorflow as tf

    staging = staging_dir(models_dir, modality)
    model.export(str(staging), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(staging))
    serve = loaded.signatures["serving_default"]
    sample = {k: np.asarray(v[:8]) for k, v in check_inputs.items()}
    exported = serve(**{k: tf.constant(v) for k, v in sample.items()})[SERVING_OUTPUT].numpy()
    expected = model.predict(sample, verbose=0)
    if not np.allclose(exported, expected, atol=1e-4, rtol=1e-3):
        raise TrainingError(f"exported {modality} SavedModel disagrees with the Keras model "
                            f"(max |diff| {np.abs(exported - expected).max():.2e})")
    return publish_version(staging, models_dir, modality, metadata)


def listener_params(clips: Sequence[Clip], listener_crop: str) -> dict[str, Any]:
    """The listener region of the training data, recorded in a vision model's preprocessing parameters.

    ``listener_region`` is ``listener_crop`` (``EMPATHY_LISTENER_CROP``: one spec for the data set, or per
    subject); ``listener_layouts`` the frame sizes of the training videos: inference applies the same region to
    videos of those sizes unless a job names another (:func:`shared.crops.region_for_video`).
    """
    from shared.media import probe

    spec = check_listener_spec(listener_crop)
    layouts = sorted({f"{info.width}x{info.height}" for info in (probe(c.video) for c in clips)})
    return {"listener_region": spec, "listener_layouts": layouts}


def train(modality_name: str, data_dir: Path | str | None = None, *, models_dir: Path | str = "models",
          val_story: int = 2, epochs: int | None = None, batch_size: int | None = None,
          learning_rate: float | None = None, patience: int | None = None, hparams: dict[str, Any] | None = None,
          params: dict[str, Any] | None = None, clips: Sequence[Clip] | None = None, seed: int = 0,
          cutoff_grid: Sequence[float] = CUTOFF_GRID_HZ, train_stride: int = 1,
          settings: Settings | None = None) -> TrainResult:
    """Train one modality on ``data_dir`` (or the given ``clips``) and export a new version.

    ``train_stride`` k > 1: each epoch fits every k-th training window, a different offset each epoch
    (:class:`training.batches.WindowBatches`); validation and inference always use every window.

    ``settings`` (default: the environment's, read here, training's entry): what the model records from them
    (the modality's ``settings_params``, the listener region) and how this process decodes and recognises
    speech (its ``runtime_params``, never recorded).
    """
    import keras

    from training.batches import WindowBatches, is_lazy
    from training.models import get_spec
    from training.models.common import ccc_loss

    started = time.monotonic()
    spec = get_spec(modality_name)
    modality = get_modality(modality_name)
    all_clips = [c for c in (clips if clips is not None else discover(data_dir)) if c.labels is not None]
    train_clips, val_clips = split_by_story(all_clips, val_story)
    if not train_clips or not val_clips:
        raise TrainingError(f"need training clips and Story {val_story} validation clips with labels; got "
                            f"{len(train_clips)} training and {len(val_clips)} validation clips")
    known_subjects = sorted({c.subject for c in train_clips})
    settings = settings or get_settings()
    runtime = modality.runtime_params(settings)
    p = {**modality.default_params(), **modality.settings_params(settings), **(params or {}),
         "known_subjects": known_subjects, **runtime}
    if entry(modality_name).vision:  # it searches the listener region: record the data set's
        p = {**listener_params(all_clips, settings.listener_crop), **p}
    p, train_data, val_data = prepare_data(modality, train_clips, val_clips, p)
    x_train, y_train = stack_inputs(train_data)
    prepare_seconds = time.monotonic() - started

    keras.utils.set_random_seed(seed)
    hp = {**spec.default_hparams(), **(hparams or {})}
    model = spec.build({k: v.shape[1:] for k, v in x_train.items()}, len(known_subjects), **hp)
    out_shape = tuple(model.output_shape[1:])
    target_shape = y_train.shape[1:] if y_train.ndim > 1 else (1,)
    if out_shape != tuple(target_shape):
        raise TrainingError(f"{modality_name} model outputs {out_shape} per window but the windows have "
                            f"{tuple(target_shape)} labels")
    y_train = y_train.reshape(len(y_train), *out_shape)
    batch = batch_size or spec.batch_size
    lr = learning_rate or spec.learning_rate
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=ccc_loss)
    history: list[dict[str, float]] = []
    stopper = _early_stopping_callback(modality, val_data, batch, patience or spec.patience, history)
    fit_started = time.monotonic()
    if is_lazy(x_train) or train_stride > 1:
        model.fit(WindowBatches(x_train, y_train, batch, seed=seed, stride=train_stride),
                  epochs=epochs or spec.epochs, verbose=0, callbacks=[stopper])
    else:
        model.fit(x_train, y_train, batch_size=batch, epochs=epochs or spec.epochs, shuffle=True, verbose=0,
                  callbacks=[stopper])
    fit_seconds = time.monotonic() - fit_started

    val_frames = [(v, predict_frames(model, modality, v, batch)) for v in val_data]
    per_clip = {v.clip.name: frame_ccc(v.labels, f) for v, f in val_frames}
    val_ccc = float(np.mean(list(per_clip.values())))
    cutoff, grid_scores = choose_cutoff(val_frames, subject_stats(train_data), cutoff_grid)
    metadata = {
        "inputs": describe_inputs(x_train),
        "output": SERVING_OUTPUT,
        "output_shape": list(out_shape),
        "preprocessing": {key: value for key, value in p.items() if key not in runtime},
        "known_subjects": known_subjects,
        "cutoff_hz": cutoff,
        "cutoff_grid": grid_scores,
        "val_ccc": val_ccc,
        "val_ccc_per_clip": per_clip,
        "val_ccc_filtered": grid_scores[str(cutoff)],
        "subject_stats": subject_stats([*train_data, *val_data]),
        "label_range": list(labels_range([x.labels for x in [*train_data, *val_data]])),
        "subject_stats_source": "training+validation labels per subject, stories pooled (authors' code)",
        "train_stories": sorted({c.story for c in train_clips}),
        "val_story": val_story,
        "train_clips": [c.name for c in train_clips],
        "dataset_hash": dataset_hash(all_clips),
        "code_version": code_version(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hparams": hp,
        "training": {"batch_size": batch, "learning_rate": lr, "max_epochs": epochs or spec.epochs,
                     "patience": patience or spec.patience, "epochs_run": len(history),
                     "best_epoch": stopper.best_epoch, "seed": seed, "train_windows": int(len(y_train)),
                     "train_stride": train_stride,
                     "prepare_seconds": round(prepare_seconds, 2), "fit_seconds": round(fit_seconds, 2)},
    }
    metadata["train_seconds"] = round(time.monotonic() - started, 2)
    target = export_model(model, models_dir, modality_name, json.loads(json.dumps(metadata, default=_jsonable)),
                          x_train)
    logger.info("model exported", extra={"modality": modality_name, "path": str(target), "val_ccc": round(val_ccc, 4),
                                         "val_ccc_filtered": round(metadata["val_ccc_filtered"], 4),
                                         "cutoff_hz": cutoff, "train_seconds": metadata["train_seconds"]})
    return TrainResult(version_dir=target, metadata=json.loads((target / "metadata.json").read_text()),
                       history=history, model=model, validation=val_data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in metadata")

