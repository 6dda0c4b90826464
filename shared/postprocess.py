"""Per-module post-processing: zero-phase low-pass, then re-scaling to the subject's label statistics.

The paper (Sec. II-D) smooths each module's prediction with a 1st-order Butterworth low-pass whose
cut-off is tuned per module (recorded as ``cutoff_hz`` in the model's metadata) and then re-centres and
re-scales it to the per-subject mean and standard deviation of the training labels, because CCC punishes
any offset or scale mismatch. The authors' code filters forward then backward from zero state without
padding, which drags both ends of every curve towards 0; :func:`shared.signal.lowpass` is zero-phase with
proper edge handling instead.

Frames a modality cannot see (NaN: no face, no speech...) are bridged by linear interpolation inside the
filter (a 0.004 Hz filter has a ~40 s time constant, so a gap must not become a step to 0) and are NaN
again afterwards, so fusion can weigh them out. The re-scaling statistics are taken over seen frames only.

Last, every curve (each module's and the fused one) is bounded to the label range: re-scaling a z-score to the
subject's mean and std puts peaks wherever the z-score goes (2.18 at the start of a clip has been seen), but an
annotation never leaves its scale. The range is the model metadata's ``label_range`` (training records
[-1, 1], the OMG-Empathy scale, or the training labels' range when they leave it), [-1, 1] without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.ccc import rescale
from shared.signal import lowpass

GLOBAL_STATS_KEY = "global"
DEFAULT_LABEL_RANGE: tuple[float, float] = (-1.0, 1.0)  # OMG-Empathy valence


def stats_for_subject(subject_stats: Mapping[str, Mapping[str, float]], subject: int | str | None) -> dict[str, float]:
    """The ``{"mean", "std"}`` of one subject, falling back to the pooled ``"global"`` statistics.

    An unknown subject (a new listener, or 0 = "not given") gets the statistics over every training
    subject: the best guess of where a stranger's curve sits.
    """
    key = str(subject) if subject is not None else GLOBAL_STATS_KEY
    chosen = subject_stats.get(key)
    if chosen is None:
        chosen = subject_stats.get(GLOBAL_STATS_KEY)
    if chosen is None:
        raise KeyError(f"subject_stats has neither subject {key!r} nor {GLOBAL_STATS_KEY!r}: {sorted(subject_stats)}")
    return {"mean": float(chosen["mean"]), "std": float(chosen["std"])}


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN frames (constant extension at the ends), so a filter sees no holes."""
    values = np.asarray(values, dtype=np.float64)
    seen = np.isfinite(values)
    if seen.all() or not seen.any():
        return values.copy()
    index = np.arange(values.size)
    return np.interp(index, index[seen], values[seen])


def smooth_and_rescale(values: np.ndarray, *, cutoff_hz: float | None, stats: Mapping[str, float] | None,
                       fps: float = 25.0, flat: bool = False) -> np.ndarray:
    """Low-pass (zero-phase, 1st order) then re-scale to ``stats``; NaN frames stay NaN.

    ``cutoff_hz`` None or <= 0 skips the filter; ``stats`` None skips the re-scaling. Used for each
    module and, with the fusion cut-off, for the fused curve. ``flat``: the prediction carries no signal
    (:mod:`shared.signal_checks`): every seen frame gets the subject's mean (the prediction's mean without
    ``stats``) instead of a z-score magnified to the subject's spread.
    """
    out = np.asarray(values, dtype=np.float64)
    if flat:
        seen = np.isfinite(out)
        level = float(stats["mean"]) if stats is not None else (float(out[seen].mean()) if seen.any() else 0.0)
        return np.where(seen, level, np.nan)
    if cutoff_hz is not None and cutoff_hz > 0:
        out = lowpass(out, cutoff_hz, fs=fps)  # NaN-safe: bridges gaps, puts the NaN back
    if stats is not None:
        out = rescale(out, float(stats["mean"]), float(stats["std"]))  # statistics over seen frames only
    return out


def label_range(metadata: Mapping[str, Any] | None) -> tuple[float, float]:
    """The (low, high) valence range a model's labels had (``label_range`` in its metadata), else [-1, 1]."""
    recorded = (metadata or {}).get("label_range")
    if not recorded:
        return DEFAULT_LABEL_RANGE
    low, high = (float(v) for v in recorded)
    if not low < high:
        raise ValueError(f"label_range {recorded!r} must be [low, high] with low < high")
    return low, high


def labels_range(labels: Sequence[np.ndarray]) -> tuple[float, float]:
    """What training records as ``label_range``: [-1, 1] when the labels stay on that scale, else their extent."""
    low = min(float(np.min(v)) for v in labels)
    high = max(float(np.max(v)) for v in labels)
    default_low, default_high = DEFAULT_LABEL_RANGE
    if default_low <= low and high <= default_high:
        return DEFAULT_LABEL_RANGE
    return min(low, default_low), max(high, default_high)


def bound(values: np.ndarray, bounds: tuple[float, float] = DEFAULT_LABEL_RANGE) -> np.ndarray:
    """``values`` clipped to ``bounds``; NaN (unseen frames) stays NaN."""
    return np.clip(np.asarray(values, dtype=np.float64), bounds[0], bounds[1])


def postprocess(values: np.ndarray, metadata: Mapping[str, Any], subject: int | str | None, *,
                fps: float = 25.0, flat: bool = False) -> np.ndarray:
    """Post-process one module's per-frame prediction with the cut-off, statistics and label range of its model.

    ``flat``: the module carries no signal (:mod:`shared.signal_checks`): a flat curve at the subject's mean.
    """
    stats_table = metadata.get("subject_stats")
    stats = stats_for_subject(stats_table, subject) if stats_table else None
    smoothed = smooth_and_rescale(values, cutoff_hz=metadata.get("cutoff_hz"), stats=stats, fps=fps, flat=flat)
    return bound(smoothed, label_range(metadata))
