"""Weighted late fusion of the post-processed module curves, with an agreement (confidence) signal.

The paper fuses with a weighted mean whose weights are about proportional to each module's validation
CCC (authors' code: audio 1, text 1, body 1, landmarks 0.4, face 0.1, divided by their sum), then smooths
the mean with a 1st-order Butterworth low-pass at 0.01 Hz and re-scales it to the subject's statistics.

What this module adds:

* **Missing data are weighed out per frame.** A module that failed, or that cannot see a frame (NaN: no
  face, silence...), gets weight 0 there and the remaining weights are renormalised to sum to 1, so a
  missing module never pulls the curve towards 0.
* **Agreement.** The paper observes that good predictions come with low disagreement between modules.
  For every frame t with at least two modules::

      mean_t      = sum_m w_mt v_mt                          (w_mt renormalised weights)
      sd_t        = sqrt(sum_m w_mt (v_mt - mean_t) ** 2)    (weighted standard deviation)
      agreement_t = 1 - min(1, sd_t / scale)

  where ``scale`` is the subject's label standard deviation (every module has been re-scaled to it, so
  modules that are as far apart as the curve's own spread give 0) or, without statistics, the standard
  deviation of all module values over the video. Frames seen by fewer than two modules get 0: nothing
  corroborates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from shared.postprocess import fill_gaps, smooth_and_rescale
from shared.settings import MODALITIES, PAPER_FUSION_WEIGHTS


class SeriesResult(Protocol):
    """What fusion needs of a module's result (``shared.pipeline.ModalityResult`` provides it)."""

    name: str
    values: np.ndarray
    status: str


class FusionError(RuntimeError):
    """Nothing usable to fuse: every module failed, was unavailable or has weight 0."""


@dataclass
class FusionResult:
    valence: np.ndarray  # (n_frames,) fused, smoothed, re-scaled valence
    agreement: np.ndarray  # (n_frames,) in [0, 1]; 1 = modules agree
    used: list[str]  # modules that contributed at least one frame
    weights: dict[str, float]  # normalised weights of the used modules (before per-frame renormalisation)
    coverage: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_frames,) modules seen per frame


def parse_weights(spec: str, metadata: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, float]:
    """Fusion weights from the configuration string (``EMPATHY_FUSION_WEIGHTS``).

    ``paper`` -> the authors' coefficients; ``ccc`` -> each model's validation CCC after its own
    post-processing (``val_ccc_filtered``, else ``val_ccc``; negative CCCs count as 0), read from
    ``metadata`` (modality -> model metadata); ``audio=1,text=2`` -> explicit, unlisted modules get 0.
    The result is not normalised: :func:`fuse` normalises over the modules actually present.
    """
    spec = spec.strip()
    if spec == "paper":
        return dict(PAPER_FUSION_WEIGHTS)
    if spec == "ccc":
        if not metadata:
            raise ValueError("fusion weights 'ccc' need the models' metadata (val_ccc)")
        weights = {}
        for name, meta in metadata.items():
            score = meta.get("val_ccc_filtered", meta.get("val_ccc"))
            if score is None:
                raise ValueError(f"model {name!r} metadata has no val_ccc: cannot use fusion weights 'ccc'")
            weights[name] = max(float(score), 0.0)
        return weights
    weights = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in MODALITIES:
            raise ValueError(f"bad fusion weight {part!r} in {spec!r}: expected 'paper', 'ccc' or 'audio=1,text=0.5,...'")
        weights[name] = float(value)
        if weights[name] < 0:
            raise ValueError(f"fusion weight of {name!r} is negative: {value}")
    return weights


def fuse(results: Mapping[str, SeriesResult], weights: Mapping[str, float], *, cutoff_hz: float = 0.01,
         subject_stats: Mapping[str, float] | None, fps: float = 25.0) -> FusionResult:
    """Fuse post-processed module curves; ``subject_stats`` is this subject's ``{"mean", "std"}``."""
    usable = [name for name, result in results.items()
              if result.status == "ok" and weights.get(name, 0.0) > 0 and np.isfinite(result.values).any()]
    if not usable:
        states = {name: result.status for name, result in results.items()}
        raise FusionError(f"no module to fuse (status per module: {states}, weights: {dict(weights)})")
    lengths = {name: int(np.asarray(results[name].values).size) for name in usable}
    if len(set(lengths.values())) != 1:
        raise FusionError(f"modules disagree on the number of frames: {lengths}")
    values = np.stack([np.asarray(results[name].values, dtype=np.float64) for name in usable])
    base = np.array([weights[name] for name in usable], dtype=np.float64)
    seen = np.isfinite(values)
    frame_weights = np.where(seen, base[:, None], 0.0)
    total = frame_weights.sum(axis=0)
    covered = total > 0
    norm = np.divide(frame_weights, total, out=np.zeros_like(frame_weights), where=covered)
    filled = np.where(seen, values, 0.0)
    mean = np.where(covered, (norm * filled).sum(axis=0), np.nan)

    spread = np.sqrt((norm * (filled - np.where(covered, mean, 0.0)) ** 2).sum(axis=0))
    scale = float(subject_stats["std"]) if subject_stats is not None else float(np.nanstd(values))
    coverage = seen.sum(axis=0)
    if scale > 0:
        agreement = 1.0 - np.minimum(1.0, spread / scale)
    else:
        agreement = np.ones(spread.shape)
    agreement = np.where(coverage >= 2, agreement, 0.0)

    # Frames no module sees are bridged by the smoothing (interpolation + 0.01 Hz low-pass), so the fused
    # curve is defined on every frame; their agreement is 0.
    valence = smooth_and_rescale(fill_gaps(mean), cutoff_hz=cutoff_hz, stats=subject_stats, fps=fps)
    normalised = {name: float(base[i] / base.sum()) for i, name in enumerate(usable)}
    return FusionResult(valence=valence, agreement=agreement, used=usable, weights=normalised, coverage=coverage)
