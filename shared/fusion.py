"""Late fusion of the post-processed module curves: weighted or learned, with agreement and a confidence band.

The paper fuses with a weighted mean whose weights are "about proportional to each module's validation
CCC" (its literal coefficients, authors' code: audio 1, text 1, body 1, landmarks 0.4, face 0.1), then
smooths the mean with a 1st-order Butterworth low-pass at 0.01 Hz and re-scales it to the subject's
statistics. The fusion methods (declared once in :mod:`shared.fusion_methods`; ``EMPATHY_FUSION_WEIGHTS``,
or per job):

* ``ccc`` (default): the paper's *rule* applied to the loaded models -- weights from each model's recorded
  validation CCC after its own post-processing (``val_ccc_filtered``), as inverse error variances
  (:func:`weight_from_ccc`);
* ``paper``: the paper's literal coefficients (a preset: they were the authors' ranking on their data);
* ``learned``: a ridge model per frame over the modules' z-scored values, their availability mask and the
  agreement-weighted consensus (:class:`LearnedFusion`), fit on validation by ``empathy train fusion``;
* explicit ``audio=1,text=0.5,...``.

What this module adds to the paper:

* **Missing data are weighed out per frame.** A module that failed, or that cannot see a frame (NaN: no
  face, silence...), gets weight 0 there and the remaining weights are renormalised to sum to 1, so a
  missing module never pulls the curve towards 0. The learned fusion replaces a missing module's value by
  the consensus of the others and sets its mask to 0 (it was trained with modules dropped that way).
* **Agreement.** The paper observes that good predictions come with low disagreement between modules.
  For every frame t with at least two modules::

      mean_t      = sum_m w_mt v_mt                          (w_mt renormalised weights)
      sd_t        = sqrt(sum_m w_mt (v_mt - mean_t) ** 2)    (weighted standard deviation)
      agreement_t = 1 - min(1, sd_t / scale)

  where ``scale`` is the subject's label standard deviation (every module has been re-scaled to it, so
  modules that are as far apart as the curve's own spread give 0) or, without statistics, the standard
  deviation of all module values over the video. Frames seen by fewer than two modules get 0.
* **Confidence band.** ``fused_t +- k * scale * (sd~_t + floor)`` where ``sd~`` is ``sd_t / scale``
  low-passed like the curve; ``k`` and ``floor`` are calibrated on validation (:func:`calibrate_band`) so
  that the stated share (``EMPATHY_FUSION_BAND_COVERAGE``) of the ground truth falls inside.
* **The final cut-off never degenerates a short clip** (:func:`effective_cutoff`): it is raised to at
  least ``EMPATHY_FUSION_MIN_CYCLES`` cycles over the clip's length, so a 20 s clip is never reduced to a
  slope (the paper's 0.01 Hz stays in force from 5 minutes on with the default of 3 cycles).

The fusion model (``models/fusion/<version>/metadata.json``, written by :mod:`training.fusion`) records, per
method, the cut-off chosen on validation, the band calibration and, for ``learned``, the coefficients.
Without one the cut-off is ``EMPATHY_FUSION_CUTOFF_HZ`` (0 -> the paper's 0.01 Hz) and the band is
uncalibrated (said in the notes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.fusion_methods import get_method, parse_weights
from shared.postprocess import DEFAULT_LABEL_RANGE, bound, fill_gaps, smooth_and_rescale

FUSION_MODEL_DIR = "fusion"  # models/fusion/<version>/metadata.json
FUSION_METADATA = "metadata.json"
PAPER_CUTOFF_HZ = 0.01
# Uncalibrated band (no fusion model): +-(spread + 0.25 std), i.e. k = 1, floor = 0.25 subject std.
DEFAULT_BAND = {"k": 1.0, "floor": 0.25}


class SeriesResult(Protocol):
    """What fusion needs of a module's result (``shared.pipeline.ModalityResult`` provides it)."""

    name: str
    values: np.ndarray
    status: str


class FusionError(RuntimeError):
    """Nothing usable to fuse: every module failed, was unavailable or has weight 0."""


@dataclass
class FusionResult:
    """A fused curve and everything that made it, so that no reader has to work it out again.

    :func:`fuse` fills the curves, ``weights`` (those that weighed the mean) and the cut-offs; :func:`fuse_with`
    adds what the specification resolved to (``method``, ``spec``, ``notes``, ``model_version``) and the label
    range the curve and band were bounded to. The result document (:mod:`shared.results`) reads all of it here.
    """

    valence: np.ndarray  # (n_frames,) fused, smoothed, re-scaled valence
    agreement: np.ndarray  # (n_frames,) in [0, 1]; 1 = modules agree
    used: list[str]  # modules that contributed at least one frame
    weights: dict[str, float]  # normalised weights of the used modules (before per-frame renormalisation)
    coverage: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_frames,) modules seen per frame
    band_low: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_frames,) lower edge of the band
    band_high: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_frames,) upper edge
    method: str = "weights"  # paper | ccc | learned | weights (explicit)
    spec: str = ""  # the weights specification asked for
    cutoff_hz: float = 0.0  # final low-pass actually applied (after the clip-length bound)
    cutoff_requested_hz: float = 0.0  # before the bound
    band_coverage: float | None = None  # share of ground truth the band was calibrated to hold; None: not calibrated
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_frames,) smoothed module spread / std
    model_version: int | None = None  # version of models/fusion used, if any
    notes: list[str] = field(default_factory=list)
    label_range: tuple[float, float] = DEFAULT_LABEL_RANGE  # the curve and its band lie within it


@dataclass
class FusionPlan:
    """What a fusion specification means given the loaded models and fusion model (:func:`resolve`).

    Resolved once per fusion; :func:`fuse_with` fuses with it and records it in the :class:`FusionResult`.
    """

    spec: str  # what was asked for: paper | ccc | learned | explicit weights
    method: str  # what it became: paper | ccc | learned | weights (``learned`` without a model -> ``ccc``)
    weights: dict[str, float]  # per module, not normalised (fuse normalises over the modules present)
    cutoff_hz: float = PAPER_CUTOFF_HZ  # requested final low-pass (before the clip-length bound)
    learned: LearnedFusion | None = None
    band: dict[str, Any] | None = None  # band calibration of the method; None: uncalibrated
    notes: list[str] = field(default_factory=list)  # every fallback taken
    model_version: int | None = None  # version of models/fusion the plan came from


# ----------------------------------------------------------------------------------- cut-off
def effective_cutoff(cutoff_hz: float, n_frames: int, *, fps: float = 25.0, min_cycles: float = 0.0) -> float:
    """The final cut-off, raised so that at least ``min_cycles`` cycles fit in the clip.

    Rule: ``max(cutoff_hz, min_cycles / duration)``, capped below Nyquist. A zero-phase 1st-order low-pass
    halves a sinusoid at its cut-off; below ``1 / duration`` it keeps little more than the clip's trend, and
    the re-scaling then blows that trend up to the subject's std. With ``min_cycles = 3``: 20 s -> 0.15 Hz,
    60 s -> 0.05 Hz, 5 min -> 0.01 Hz (the paper's value, for which the paper's 5-8 minute videos were made).
    ``cutoff_hz <= 0`` means no filter and stays so.
    """
    if cutoff_hz <= 0 or n_frames <= 1 or min_cycles <= 0:
        return float(cutoff_hz)
    duration_s = n_frames / fps
    return float(min(max(cutoff_hz, min_cycles / duration_s), 0.45 * fps))


# ----------------------------------------------------------------------------------- learned fusion
@dataclass
class LearnedFusion:
    """Per-frame ridge over z-scored module values, availability mask and agreement-weighted consensus.

    Features of frame t (modules in ``modules`` order; ``z`` = value re-centred/scaled by the subject's
    statistics): ``x_m`` = ``z_mt`` where module m sees the frame, else the consensus ``c_t`` (the
    ``consensus_weights``-weighted mean of the modules that do); ``mask_m`` in {0, 1}; ``a_t * c_t`` with
    ``a_t`` the agreement; and an intercept. Output: valence in z units, then low-passed and re-scaled like
    the weighted mean. Coefficients are plain numbers (JSON in the fusion model's metadata).
    """

    modules: list[str]
    coef_values: list[float]
    coef_mask: list[float]
    coef_agreement: float
    intercept: float
    consensus_weights: dict[str, float]
    alpha: float = 1.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedFusion:
        return cls(modules=list(data["modules"]), coef_values=[float(v) for v in data["coef_values"]],
                   coef_mask=[float(v) for v in data["coef_mask"]], coef_agreement=float(data["coef_agreement"]),
                   intercept=float(data["intercept"]),
                   consensus_weights={k: float(v) for k, v in data["consensus_weights"].items()},
                   alpha=float(data.get("alpha", 1.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"modules": self.modules, "coef_values": self.coef_values, "coef_mask": self.coef_mask,
                "coef_agreement": self.coef_agreement, "intercept": self.intercept,
                "consensus_weights": self.consensus_weights, "alpha": self.alpha}

    def predict(self, z: Mapping[str, np.ndarray], n_frames: int) -> np.ndarray:
        """Fused z-valence per frame from the modules' z curves (NaN = not seen; absent = never seen)."""
        return learned_features(z, self.modules, self.consensus_weights, n_frames) @ self.coefficients()

    def coefficients(self) -> np.ndarray:
        return np.array([*self.coef_values, *self.coef_mask, self.coef_agreement, self.intercept])


def learned_features(z: Mapping[str, np.ndarray], modules: Sequence[str], consensus_weights: Mapping[str, float],
                     n_frames: int) -> np.ndarray:
    """The (n_frames, 2 M + 2) design matrix of :class:`LearnedFusion` (see there)."""
    stacked = np.stack([np.asarray(z[m], dtype=np.float64) if m in z else np.full(n_frames, np.nan)
                        for m in modules])
    seen = np.isfinite(stacked)
    base = np.array([max(consensus_weights.get(m, 0.0), 0.0) for m in modules]) + 1e-6
    consensus, spread = weighted_mean_spread(stacked, seen, base)
    consensus = np.where(np.isfinite(consensus), consensus, 0.0)  # no module at all: the subject's mean
    agreement = 1.0 - np.minimum(1.0, spread)  # z units: the subject std is 1
    agreement = np.where(seen.sum(axis=0) >= 2, agreement, 0.0)
    values = np.where(seen, stacked, consensus[None, :])
    return np.column_stack([values.T, seen.T.astype(np.float64), agreement * consensus, np.ones(n_frames)])


def weighted_mean_spread(values: np.ndarray, seen: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame renormalised weighted mean and weighted std of ``values`` (M, T); NaN mean where none sees."""
    frame_weights = np.where(seen, base[:, None], 0.0)
    total = frame_weights.sum(axis=0)
    covered = total > 0
    norm = np.divide(frame_weights, total, out=np.zeros_like(frame_weights), where=covered)
    filled = np.where(seen, values, 0.0)
    mean = np.where(covered, (norm * filled).sum(axis=0), np.nan)
    spread = np.sqrt((norm * (filled - np.where(covered, mean, 0.0)) ** 2).sum(axis=0))
    return mean, spread


# ----------------------------------------------------------------------------------- the fusion model
@dataclass
class FusionModel:
    """What ``empathy train fusion`` recorded (``models/fusion/<version>/metadata.json``)."""

    version: int | None
    metadata: dict[str, Any]

    def method(self, name: str) -> dict[str, Any] | None:
        return (self.metadata.get("methods") or {}).get(name)

    def cutoff(self, name: str) -> float | None:
        entry = self.method(name)
        return None if entry is None else float(entry["cutoff_hz"])

    def band(self, name: str) -> dict[str, float] | None:
        entry = self.method(name)
        return None if entry is None or "band" not in entry else dict(entry["band"])

    def learned(self) -> LearnedFusion | None:
        entry = self.method("learned")
        return None if entry is None or "model" not in entry else LearnedFusion.from_dict(entry["model"])


def fusion_versions(models_dir: Path | str) -> list[int]:
    """Versions (ascending) of the fusion model: numeric directories holding a metadata file."""
    root = Path(models_dir) / FUSION_MODEL_DIR
    if not root.is_dir():
        return []
    return sorted(int(c.name) for c in root.iterdir() if c.name.isdigit() and (c / FUSION_METADATA).is_file())


def load_fusion_model(models_dir: Path | str | None, version: int | None = None) -> FusionModel | None:
    """The latest (or given) fusion model under ``models_dir``; None when there is none."""
    if models_dir is None:
        return None
    versions = fusion_versions(models_dir)
    if not versions:
        return None
    chosen = versions[-1] if version is None else version
    path = Path(models_dir) / FUSION_MODEL_DIR / str(chosen) / FUSION_METADATA
    return FusionModel(version=chosen, metadata=json.loads(path.read_text()))


# ----------------------------------------------------------------------------------- band
def calibrate_band(residuals: np.ndarray, spread: np.ndarray, coverage: float,
                   floors: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0, 3.0)) -> dict[str, float]:
    """``k`` and ``floor`` so that ``|residual| <= k (spread + floor)`` on ``coverage`` of the frames.

    Both arrays are in units of the subject's std. For each floor, ``k`` is the ``coverage`` quantile of
    ``|residual| / (spread + floor)`` (split-conformal style); the floor giving the narrowest mean band wins.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"band coverage must be in (0, 1), got {coverage}")
    ok = np.isfinite(residuals) & np.isfinite(spread)
    r, s = np.abs(residuals[ok]), spread[ok]
    if r.size == 0:
        raise ValueError("no frame to calibrate the band on")
    best: dict[str, float] | None = None
    for floor in floors:
        k = float(np.quantile(r / (s + floor), coverage))
        width = float(k * np.mean(s + floor))
        if best is None or width < best["mean_half_width"]:
            best = {"k": k, "floor": float(floor), "mean_half_width": width}
    assert best is not None
    best["coverage"] = float(coverage)
    return best


def band_for_duration(band: Mapping[str, Any], duration_s: float) -> dict[str, Any]:
    """The band calibration for a clip of ``duration_s``: the ``by_duration`` entry nearest in log-duration.

    A calibration without ``by_duration`` applies to every length.
    """
    entries = band.get("by_duration") or []
    if not entries or duration_s <= 0:
        return dict(band)
    nearest = min(entries, key=lambda e: abs(math.log(float(e["duration_s"]) / duration_s)))
    return {**band, "k": float(nearest["k"]), "floor": float(nearest["floor"])}


# ----------------------------------------------------------------------------------- fusing
def fuse(results: Mapping[str, SeriesResult], weights: Mapping[str, float], *, cutoff_hz: float = PAPER_CUTOFF_HZ,
         subject_stats: Mapping[str, float] | None, fps: float = 25.0, learned: LearnedFusion | None = None,
         band: Mapping[str, float] | None = None, min_cycles: float = 0.0) -> FusionResult:
    """Fuse post-processed module curves; ``subject_stats`` is this subject's ``{"mean", "std"}``.

    ``weights`` weigh the mean (and, with ``learned``, the spread that drives agreement and band). ``band``:
    ``{"k", "floor"}`` from :func:`calibrate_band` (default :data:`DEFAULT_BAND`, uncalibrated).
    ``min_cycles``: see :func:`effective_cutoff`.
    """
    usable = [name for name, result in results.items()
              if result.status == "ok" and np.isfinite(result.values).any()
              and (weights.get(name, 0.0) > 0 or (learned is not None and name in learned.modules))]
    if not usable:
        states = {name: result.status for name, result in results.items()}
        raise FusionError(f"no module to fuse (status per module: {states}, weights: {dict(weights)})")
    lengths = {name: int(np.asarray(results[name].values).size) for name in usable}
    if len(set(lengths.values())) != 1:
        raise FusionError(f"modules disagree on the number of frames: {lengths}")
    n_frames = next(iter(lengths.values()))
    values = np.stack([np.asarray(results[name].values, dtype=np.float64) for name in usable])
    base = np.array([max(weights.get(name, 0.0), 0.0) for name in usable], dtype=np.float64)
    if base.sum() <= 0:  # learned fusion over modules the weights do not know: equal weights for the spread
        base = np.ones(len(usable))
    seen = np.isfinite(values)
    mean, spread = weighted_mean_spread(values, seen & (base[:, None] > 0), base)
    scale = float(subject_stats["std"]) if subject_stats is not None else float(np.nanstd(values))
    centre = float(subject_stats["mean"]) if subject_stats is not None else float(np.nanmean(values))
    coverage = (seen & (base[:, None] > 0)).sum(axis=0)
    if scale > 0:
        agreement = 1.0 - np.minimum(1.0, spread / scale)
    else:
        agreement = np.ones(spread.shape)
    agreement = np.where(coverage >= 2, agreement, 0.0)

    if learned is not None:
        unit = scale if scale > 0 else 1.0
        z = {name: (values[i] - centre) / unit for i, name in enumerate(usable)}
        mean = learned.predict(z, n_frames)
        coverage = seen.sum(axis=0)

    cutoff = effective_cutoff(cutoff_hz, n_frames, fps=fps, min_cycles=min_cycles)
    # Frames no module sees are bridged by the smoothing (interpolation + low-pass), so the fused curve is
    # defined on every frame; their agreement is 0.
    valence = smooth_and_rescale(fill_gaps(mean), cutoff_hz=cutoff, stats=subject_stats, fps=fps)
    relative = spread / scale if scale > 0 else np.zeros_like(spread)
    relative = np.where(coverage >= 1, relative, np.nan)
    smoothed = smooth_and_rescale(fill_gaps(relative), cutoff_hz=cutoff, stats=None, fps=fps)
    smoothed = np.where(np.isfinite(smoothed), np.maximum(smoothed, 0.0), 0.0)
    chosen = band_for_duration(band or DEFAULT_BAND, n_frames / fps)
    half = float(chosen["k"]) * (smoothed + float(chosen["floor"])) * (scale if scale > 0 else 1.0)
    normalised = {name: float(base[i] / base.sum()) for i, name in enumerate(usable)}
    return FusionResult(valence=valence, agreement=agreement, used=usable, weights=normalised, coverage=coverage,
                        band_low=valence - half, band_high=valence + half, cutoff_hz=cutoff, spread=smoothed,
                        cutoff_requested_hz=float(cutoff_hz),
                        band_coverage=float(chosen["coverage"]) if "coverage" in chosen else None)


def resolve(spec: str, metadata: Mapping[str, Mapping[str, Any]], model: FusionModel | None, *,
            cutoff_hz: float = 0.0) -> FusionPlan:
    """What a fusion specification means given the loaded models and fusion model.

    A method (:mod:`shared.fusion_methods`) that needs a fitted model (``learned``) falls back to its
    ``fallback`` when the fusion model has none, named in the notes. ``cutoff_hz`` > 0 overrides the
    validated cut-off; else the fusion model's cut-off for the method, else the paper's 0.01 Hz.
    """
    spec = spec.strip()
    notes: list[str] = []
    entry = get_method(spec)
    learned = None
    if entry is not None and entry.needs_model:
        learned = model.learned() if model is not None else None
        if learned is None:
            notes.append(f"fusion {entry.name!r} asked for but no learned fusion model exists under models/fusion "
                         f"(train one: empathy train fusion): fused with {entry.fallback!r} instead")
            entry = get_method(entry.fallback)
            assert entry is not None  # register() checks every fallback exists
        else:
            ignored = sorted(set(metadata) - set(learned.modules))
            if ignored:
                notes.append(f"fusion {entry.name!r} was fit without {', '.join(ignored)}: not fused")
    if entry is None:
        method, weights = "weights", parse_weights(spec)
    elif learned is not None:
        method, weights = entry.name, dict(learned.consensus_weights)
    else:
        weights, rule_notes = entry.weights(metadata)
        method = entry.name
        notes += rule_notes
    calibrated = model.cutoff(method) if model is not None else None
    if cutoff_hz > 0:
        cutoff = float(cutoff_hz)
    elif calibrated is not None:
        cutoff = calibrated
    else:
        cutoff = PAPER_CUTOFF_HZ
    band = model.band(method) if model is not None else None
    if band is None:
        notes.append(f"confidence band not calibrated for fusion {method!r} (no fusion model with it): "
                     f"+-({DEFAULT_BAND['k']:g} x (module spread + {DEFAULT_BAND['floor']:g} std))")
    return FusionPlan(spec=spec, method=method, weights=weights, cutoff_hz=cutoff, learned=learned, band=band,
                      notes=notes, model_version=model.version if model is not None else None)


def fuse_with(results: Mapping[str, SeriesResult], plan: FusionPlan, *, subject_stats: Mapping[str, float] | None,
          fps: float = 25.0, min_cycles: float = 0.0,
          label_range: Sequence[float] = DEFAULT_LABEL_RANGE) -> FusionResult:
    """:func:`fuse` as ``plan`` says, the curve and its band bounded to ``label_range``, the plan recorded."""
    fused = fuse(results, plan.weights, cutoff_hz=plan.cutoff_hz, subject_stats=subject_stats, fps=fps,
                 learned=plan.learned, band=plan.band, min_cycles=min_cycles)
    limits = (float(label_range[0]), float(label_range[1]))
    fused.valence = bound(fused.valence, limits)
    fused.band_low, fused.band_high = bound(fused.band_low, limits), bound(fused.band_high, limits)
    fused.method, fused.spec, fused.notes = plan.method, plan.spec, list(plan.notes)
    fused.model_version, fused.label_range = plan.model_version, limits
    return fused
