"""``empathy train fusion``: fit the fusion on the validation predictions of the five exported modules.

The paper tuned each module's low-pass on validation and set the fusion weights "about proportional" to the
validation CCCs; its final 0.01 Hz low-pass and the weights were fixed by hand. Here everything the fusion
needs is fit on the same validation story the modules were tuned on, through the serving pipeline
(:func:`shared.pipeline.run_modality`: the curves a user of the service gets):

1. every module predicts every validation clip (post-processed with its own cut-off and statistics);
2. for each method (``paper``, ``ccc``, ``learned``) the final cut-off is chosen on the trainer's grid
   (:data:`training.trainer.CUTOFF_GRID_HZ`) plus 0 = no final low-pass, with the clip-length bound of
   inference applied (ties -> the least smoothing: below the bound every grid value means the same on
   these clips);
3. the learned fusion (:class:`shared.fusion.LearnedFusion`, a ridge per frame) is fit on the validation
   frames, augmented with copies where a module is missing (whole clip, or random 4 s blocks) so that it
   learns what to do without it; its ridge penalty is chosen by leave-one-clip-out CCC;
4. the confidence band of each method is calibrated (:func:`shared.fusion.calibrate_band`) to hold
   ``EMPATHY_FUSION_BAND_COVERAGE`` of the validation labels replayed with the level and scale of every
   training story (:func:`band_residuals`: a new story's labels do not sit exactly at the subject's pooled
   statistics the curve is re-scaled to) -- for ``learned`` on its leave-one-clip-out curves, so the band
   does not inherit the fit's optimism;
5. export ``models/fusion/<version>/metadata.json`` (staging + atomic rename, as for the other models) with
   the modules' versions and the data-set hash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from serving.client import open_model
from serving.model_store import publish_version, staging_dir
from shared.ccc import ccc
from shared.data import Clip, check_labels, discover, split_by_story
from shared.fusion import (
    FUSION_MODEL_DIR,
    LearnedFusion,
    calibrate_band,
    fuse,
    fusion_versions,
    learned_features,
)
from shared.fusion_methods import ccc_weights
from shared.fusion_methods import methods as fusion_methods
from shared.pipeline import fusion_stats, run_modality
from shared.settings import MODALITIES, Settings, get_settings
from shared.values import ModalityResult

logger = logging.getLogger(__name__)

RIDGE_ALPHAS: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0, 10000.0)
# The modules' grid plus 0 = no final low-pass: every module is already low-passed at its own validated cut-off,
# and a second filter can only remove more (on the bundled models it costs 0.03-0.1 CCC on held-out clips).
NO_FILTER = 0.0
# Clip lengths the band is calibrated for (the nearest is used at inference; see band_calibration).
BAND_DURATIONS_S: tuple[float, ...] = (20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 480.0)
DROP_BLOCK_S = 4.0  # length of the random missing blocks of the augmentation
DROP_BLOCK_SHARE = 0.2  # share of blocks each module loses in the augmented copy


@dataclass
class ClipCurves:
    """One labelled clip with every module's post-processed curve (the fusion's input)."""

    clip: Clip
    labels: np.ndarray
    results: dict[str, ModalityResult]
    stats: dict[str, float] | None  # the subject's label statistics used by fusion


def module_curves(clips: Sequence[Clip], models_dir: Path | str, modalities: Sequence[str], *,
                  settings: Settings) -> tuple[list[ClipCurves], dict[str, dict[str, Any]]]:
    """Run every module on every clip through the serving pipeline; returns the curves and the metadata."""
    models = {name: open_model(name, settings, models_dir=models_dir, local=True) for name in modalities}
    predictors = {name: model.predictor for name, model in models.items()}
    metadata = {name: model.metadata for name, model in models.items()}
    out = []
    for clip in clips:
        results = {name: run_modality(name, clip.video, subject=clip.subject, predictor=predictors[name],
                                      metadata=metadata[name], settings=settings, transcript=clip.transcript)
                   for name in modalities}
        n_frames = max(r.values.size for r in results.values())
        out.append(ClipCurves(clip, check_labels(clip, n_frames), results, fusion_stats(metadata, clip.subject)))
        logger.info("module curves ready", extra={"clip": clip.name,
                                                  "status": {n: r.status for n, r in results.items()}})
    return out, metadata


def _fused(curves: ClipCurves, weights: Mapping[str, float], cutoff: float, *, min_cycles: float, fps: float,
           learned: LearnedFusion | None = None, band: Mapping[str, float] | None = None) -> Any:
    return fuse(curves.results, weights, cutoff_hz=cutoff, subject_stats=curves.stats, fps=fps, learned=learned,
                band=band, min_cycles=min_cycles)


def choose_cutoff(clips: Sequence[ClipCurves], weights: Mapping[str, float], grid: Sequence[float], *,
                  min_cycles: float, fps: float = 25.0,
                  learned: LearnedFusion | None = None) -> tuple[float, dict[str, float]]:
    """The grid cut-off with the best mean validation CCC of the fused curve; ties -> the least smoothing.

    0 in the grid means no final low-pass (the least smoothing of all).
    """
    scores = {}
    for cutoff in grid:
        fused = [_fused(c, weights, cutoff, min_cycles=min_cycles, fps=fps, learned=learned) for c in clips]
        scores[str(cutoff)] = float(np.mean([ccc(c.labels, f.valence) for c, f in zip(clips, fused, strict=True)]))
    best = max(scores.values())
    chosen = max((c for c in grid if scores[str(c)] >= best - 1e-9), key=lambda c: np.inf if c <= 0 else c)
    return float(chosen), scores


def _z(curves: ClipCurves) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Module curves and labels in units of the subject's statistics."""
    stats = curves.stats or {"mean": float(np.mean(curves.labels)), "std": float(np.std(curves.labels)) or 1.0}
    z = {n: (np.asarray(r.values, dtype=np.float64) - stats["mean"]) / stats["std"]
         for n, r in curves.results.items() if r.status == "ok"}
    return z, (curves.labels.astype(np.float64) - stats["mean"]) / stats["std"]


def _augmented(curves: ClipCurves, modules: Sequence[str], rng: np.random.Generator,
               fps: float) -> list[dict[str, np.ndarray]]:
    """The clip as seen, then once without each module, then with random blocks of every module missing."""
    z, _ = _z(curves)
    copies = [z]
    for name in modules:
        if name in z:
            copies.append({m: v for m, v in z.items() if m != name})
    n_frames = curves.labels.size
    block = max(1, int(DROP_BLOCK_S * fps))
    holes = {}
    for name, values in z.items():
        dropped = values.copy()
        for start in range(0, n_frames, block):
            if rng.random() < DROP_BLOCK_SHARE:
                dropped[start:start + block] = np.nan
        holes[name] = dropped
    copies.append(holes)
    return copies


def fit_ridge(clips: Sequence[ClipCurves], modules: Sequence[str], consensus: Mapping[str, float], alpha: float, *,
              seed: int = 0, fps: float = 25.0) -> LearnedFusion:
    """Ridge on the augmented validation frames (intercept not penalised), module weights >= 0.

    Why non-negative: every module is fit to predict valence, so a negative weight only ever exploits errors
    that happen to be shared by two good modules on the few validation clips (unconstrained, the bundled
    models' validation gives the body module -0.36: face, landmarks and body are nearly collinear there).
    """
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for curves in clips:
        _, y = _z(curves)
        for z in _augmented(curves, modules, rng, fps):
            rows.append(learned_features(z, modules, consensus, y.size))
            targets.append(y)
    x, y = np.concatenate(rows), np.concatenate(targets)
    m = len(modules)
    penalty = np.sqrt(alpha) * np.eye(x.shape[1])[:-1]  # every coefficient but the intercept
    lower = np.concatenate([np.zeros(m), np.full(x.shape[1] - m, -np.inf)])
    coef = lsq_linear(np.vstack([x, penalty]), np.concatenate([y, np.zeros(len(penalty))]),
                      bounds=(lower, np.full(x.shape[1], np.inf)), method="bvls").x
    return LearnedFusion(modules=list(modules), coef_values=[float(v) for v in coef[:m]],
                         coef_mask=[float(v) for v in coef[m:2 * m]], coef_agreement=float(coef[2 * m]),
                         intercept=float(coef[2 * m + 1]), consensus_weights=dict(consensus), alpha=float(alpha))


def fit_learned(clips: Sequence[ClipCurves], modules: Sequence[str], consensus: Mapping[str, float], *,
                cutoff: float, min_cycles: float, fps: float = 25.0, alphas: Sequence[float] = RIDGE_ALPHAS,
                seed: int = 0) -> tuple[LearnedFusion, dict[str, float], list[Any]]:
    """Choose the ridge penalty by leave-one-clip-out CCC, refit on every clip.

    Returns the model, the leave-one-clip-out CCC per penalty, and the held-out fused results of the chosen
    penalty (one per clip; in-sample when there is a single clip) for the band calibration.
    """
    scores: dict[str, float] = {}
    held_out: dict[str, list[Any]] = {}
    for alpha in alphas:
        fused = []
        for i, curves in enumerate(clips):
            rest = [c for j, c in enumerate(clips) if j != i] or [curves]
            model = fit_ridge(rest, modules, consensus, alpha, seed=seed, fps=fps)
            fused.append(_fused(curves, consensus, cutoff, min_cycles=min_cycles, fps=fps, learned=model))
        held_out[str(alpha)] = fused
        scores[str(alpha)] = float(np.mean([ccc(c.labels, f.valence) for c, f in zip(clips, fused, strict=True)]))
    best = max(alphas, key=lambda a: (scores[str(a)], a))
    return fit_ridge(clips, modules, consensus, best, seed=seed, fps=fps), scores, held_out[str(best)]


def story_statistics(clips: Sequence[Clip]) -> dict[int, list[tuple[float, float]]]:
    """Per subject, the (mean, std) of the labels of each of its clips (one per story)."""
    from shared.data import read_labels

    out: dict[int, list[tuple[float, float]]] = {}
    for clip in clips:
        if clip.labels is not None:
            labels = read_labels(clip.labels)
            out.setdefault(clip.subject, []).append((float(labels.mean()), float(labels.std())))
    return out


def band_residuals(curves: ClipCurves, result: Any, story_stats: Sequence[tuple[float, float]] = (), *,
                   shrink: float = 1.0) -> list[np.ndarray]:
    """Residuals of one validation clip in units of the subject's std, as a story the models never saw would
    have them.

    The fused curve is re-scaled to the subject's pooled statistics ``(mu, sigma)``, but a new story's labels
    have their own mean and std: the validation story happens to sit close to the pooled ones (bundled data:
    within 0.04 std), other stories of the same listener sit up to 0.6 std away. So each validation residual
    is also replayed with the mean and std ``(m_k, s_k)`` of every training story k of that listener::

        r_k = (m_k - mu) / sigma + (s_k / sigma) z_true - z_fused

    (``z_true``: the clip's labels standardised; ``z_fused``: the fused curve in units of (mu, sigma)): the
    shape error measured on validation plus the level and scale error a new story brings. ``shrink`` scales
    the story's deviations ``m_k - mu`` and ``s_k - sigma`` (a longer clip's level and spread wander less
    from the pooled ones, see :func:`band_calibration`). Without training stories of that listener, the
    plain residual is used.
    """
    stats = curves.stats or {"mean": float(np.mean(curves.labels)), "std": float(np.std(curves.labels)) or 1.0}
    mu, sigma = float(stats["mean"]), float(stats["std"])
    if not story_stats:
        return [(curves.labels - result.valence) / sigma]
    spread_labels = float(np.std(curves.labels)) or 1.0
    z_true = (curves.labels - float(np.mean(curves.labels))) / spread_labels
    z_fused = (result.valence - mu) / sigma
    return [shrink * (m_k - mu) / sigma + (1.0 + shrink * (s_k - sigma) / sigma) * z_true - z_fused
            for m_k, s_k in story_stats]


def band_calibration(clips: Sequence[ClipCurves], fused: Sequence[Any], coverage: float,
                     story_stats: Mapping[int, Sequence[tuple[float, float]]] | None = None, *,
                     fps: float = 25.0, durations_s: Sequence[float] = BAND_DURATIONS_S) -> dict[str, Any]:
    """Band ``k``/``floor`` from the validation residuals (:func:`band_residuals`), one pair per clip length.

    The training stories' clips (``story_stats``) are as long as the validation clips (``T_cal``); the level
    and spread of a clip of T seconds wander from the listener's pooled statistics less the longer it is,
    like a mean over T seconds (~ 1 / sqrt(T)). So for each length T of ``durations_s`` the replayed
    deviations are scaled by ``min(1, sqrt(T_cal / T))`` and ``k``/``floor`` calibrated on them
    (``by_duration``; inference takes the nearest length). Top-level ``k``/``floor`` are those of ``T_cal``.
    Also returned: the coverage reached on the replayed residuals at ``T_cal`` (``val_coverage``, the
    target by construction) and on the plain validation residuals (``val_coverage_plain``).
    """
    t_cal = float(np.mean([c.labels.size / fps for c in clips]))

    def pooled(shrink: float) -> tuple[np.ndarray, np.ndarray]:
        residuals, spread = [], []
        for curves, result in zip(clips, fused, strict=True):
            replayed = band_residuals(curves, result, (story_stats or {}).get(curves.clip.subject, ()), shrink=shrink)
            residuals += replayed
            spread += [result.spread] * len(replayed)
        return np.concatenate(residuals), np.concatenate(spread)

    r, s = pooled(1.0)
    band: dict[str, Any] = calibrate_band(r, s, coverage)
    band["val_coverage"] = float(np.mean(np.abs(r) <= band["k"] * (s + band["floor"])))
    band["calibration_duration_s"] = round(t_cal, 2)
    band["by_duration"] = []
    for duration in durations_s:
        shrink = min(1.0, float(np.sqrt(t_cal / duration)))
        entry = calibrate_band(*pooled(shrink), coverage)
        band["by_duration"].append({"duration_s": float(duration), "shrink": round(shrink, 4), "k": entry["k"],
                                    "floor": entry["floor"]})
    plain, plain_spread = [], []
    for curves, result in zip(clips, fused, strict=True):
        plain += band_residuals(curves, result)
        plain_spread.append(result.spread)
    r, s = np.concatenate(plain), np.concatenate(plain_spread)
    band["val_coverage_plain"] = float(np.mean(np.abs(r) <= band["k"] * (s + band["floor"])))
    return band


def dataset_fingerprint(clips: Sequence[Clip]) -> str:
    from training.trainer import dataset_hash

    return dataset_hash(clips)


@dataclass
class FusionTrainResult:
    version_dir: Path
    metadata: dict[str, Any]


def train_fusion(data_dir: Path | str | None = None, *, models_dir: Path | str = "models", val_story: int = 2,
                 clips: Sequence[Clip] | None = None, modalities: Sequence[str] | None = None,
                 coverage: float | None = None, grid: Sequence[float] | None = None, seed: int = 0,
                 settings: Settings | None = None) -> FusionTrainResult:
    """Fit cut-offs, weights, the learned fusion and the bands on the validation story; export a version."""
    from training.trainer import CUTOFF_GRID_HZ, TrainingError, code_version

    started = time.monotonic()
    settings = settings or get_settings()
    coverage = settings.fusion_band_coverage if coverage is None else coverage
    grid = tuple(grid or (NO_FILTER, *CUTOFF_GRID_HZ))
    from serving.model_store import list_versions

    names = [m for m in (modalities or MODALITIES) if list_versions(Path(models_dir) / m)]
    if not names:
        raise TrainingError(f"no exported module under {models_dir}: train the modules first")
    all_clips = [c for c in (clips if clips is not None else discover(data_dir)) if c.labels is not None]
    train_clips, val_clips = split_by_story(all_clips, val_story)
    story_stats = story_statistics(train_clips)
    if not val_clips:
        raise TrainingError(f"no labelled Story {val_story} clip to fit the fusion on")
    curves, metadata = module_curves(val_clips, models_dir, names, settings=settings)
    fps, min_cycles = float(settings.fps), float(settings.fusion_min_cycles)
    methods: dict[str, dict[str, Any]] = {}
    weights_ccc, notes = ccc_weights(metadata)
    for entry in fusion_methods():  # every weighted method (shared.fusion_methods); the fitted one below
        if entry.needs_model:
            continue
        method, rule = entry.name, entry.weights(metadata)[0]
        weights = {n: rule.get(n, 0.0) for n in names}
        cutoff, scores = choose_cutoff(curves, weights, grid, min_cycles=min_cycles, fps=fps)
        fused = [_fused(c, weights, cutoff, min_cycles=min_cycles, fps=fps) for c in curves]
        methods[method] = {"weights": weights, "cutoff_hz": cutoff, "cutoff_scores": scores,
                           "val_ccc": scores[str(cutoff)],
                           "band": band_calibration(curves, fused, coverage, story_stats)}
    model, alpha_scores, held_out = fit_learned(curves, names, weights_ccc, cutoff=methods["ccc"]["cutoff_hz"],
                                                min_cycles=min_cycles, fps=fps, seed=seed)
    cutoff, scores = choose_cutoff(curves, weights_ccc, grid, min_cycles=min_cycles, fps=fps, learned=model)
    _, _, held_out = fit_learned(curves, names, weights_ccc, cutoff=cutoff, min_cycles=min_cycles, fps=fps,
                                 alphas=(model.alpha,), seed=seed)
    methods["learned"] = {"model": model.to_dict(), "cutoff_hz": cutoff, "cutoff_scores": scores,
                          "val_ccc": scores[str(cutoff)], "alpha_scores_loo": alpha_scores,
                          "val_ccc_loo": float(np.mean([ccc(c.labels, f.valence)
                                                        for c, f in zip(curves, held_out, strict=True)])),
                          "band": band_calibration(curves, held_out, coverage, story_stats)}
    module_hashes = {n: metadata[n].get("dataset_hash") for n in names}
    data_hash = dataset_fingerprint(all_clips)
    if any(h not in (None, data_hash) for h in module_hashes.values()):
        notes.append("some modules were trained on another data set (dataset_hash differs)")
    result_meta = {
        "kind": "fusion",
        "modules": {n: {"version": metadata[n].get("version"), "val_ccc_filtered": metadata[n].get("val_ccc_filtered"),
                        "dataset_hash": module_hashes[n]} for n in names},
        "methods": methods,
        "band_coverage": float(coverage),
        "cutoff_grid": list(grid),
        "min_cycles": min_cycles,
        "val_story": val_story,
        "val_clips": [c.clip.name for c in curves],
        "dataset_hash": data_hash,
        "code_version": code_version(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "notes": notes,
        "train_seconds": round(time.monotonic() - started, 2),
    }
    staging = staging_dir(models_dir, FUSION_MODEL_DIR)
    versions = fusion_versions(models_dir)
    target = publish_version(staging, models_dir, FUSION_MODEL_DIR, result_meta,
                             version=(versions[-1] + 1) if versions else 1)
    logger.info("fusion model exported", extra={"path": str(target), **{f"val_ccc_{m}": round(v["val_ccc"], 4)
                                                                         for m, v in methods.items()}})
    from serving.model_store import read_metadata

    return FusionTrainResult(version_dir=target, metadata=read_metadata(target))
