"""Does a module's input or prediction carry a signal? Checked before the per-subject re-scaling.

:func:`shared.ccc.rescale` z-scores a prediction over the video and gives it the subject's spread: any
wiggle becomes a full-swing curve. A video of one frozen frame made the body model's output constant to
1e-4 and its re-scaled curve swing -0.68..+0.70; a track of digital silence made the audio model's output
swing anyway (it never heard silence in training) and the curve followed. Two checks stop that:

* **the input** (what the modality reads): silence on the audio track (:class:`LoudnessMeter`: the loudest
  40 ms frame under :data:`SILENCE_DBFS`), a frozen picture (:class:`MotionMeter`: no part of the listener
  region ever changes from its first frame) or a single frame (a still image). The modality puts the reason in
  its windows' ``info["no_signal"]``.
* **the prediction**: its spread over the video (std of the raw per-frame output) compared with the spread
  the model showed on its validation videos (``raw_spread`` in the model's metadata, recorded by the trainer).
  Under ``flat_fraction`` (``EMPATHY_FLAT_FRACTION``, 0.1) of it the prediction is flat: the model saw no
  variation, and re-scaling would only magnify noise.

A module without signal keeps a flat curve at the subject's mean (never re-scaled up), says why in its result
(``quality.no_signal``) and the fusion weighs it 0 (:func:`shared.fusion.fuse`, which also lowers the agreement and
widens the band by the share of weight that carried no signal).

Models trained before ``raw_spread`` was recorded have no measure of their own spread: for them only a
prediction constant to :data:`FALLBACK_FLAT_STD` (std 0.001, e.g. the issue's body output on a frozen frame,
constant to 1e-4) counts as flat. The labels' spread is no substitute: the small bundled models, trained on
the synthetic set, swing 0.02-0.03 on a real moving face against a label std of 0.5, and would all have been
called flat. :func:`reference_spread` says which rule was used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

DEFAULT_FLAT_FRACTION = 0.1
FALLBACK_FLAT_STD = 1e-3  # models without raw_spread: flat only when (numerically) constant
SILENCE_DBFS = -60.0  # loudest 40 ms frame quieter than this: nothing to hear (digital silence is -inf)
MOTION_THUMB = (64, 36)  # the listener region shrunk to this for the frozen-picture check (cheap: ~0.1 ms)
MOTION_LEVEL = 12  # a thumbnail pixel "changed" when it differs from the first frame by more than this (of 255)
MOTION_SHARE = 0.002  # ... and the picture moved when more than this share of pixels changed on some frame


def reference_spread(metadata: Mapping[str, Any]) -> tuple[float | None, str]:
    """The raw prediction spread a model shows on real input, and where it comes from.

    ``raw_spread`` (recorded at training: the median over validation videos of the std of the raw per-frame
    prediction); None for models trained before it was recorded (then :data:`FALLBACK_FLAT_STD` applies).
    """
    recorded = metadata.get("raw_spread")
    if recorded is not None and float(recorded) > 0:
        return float(recorded), "raw_spread"
    return None, f"none recorded (model trained before raw_spread): flat only under std {FALLBACK_FLAT_STD:g}"


def prediction_spread(frames: np.ndarray) -> float:
    """Std of a raw per-frame prediction over the frames the modality saw (0 when it saw fewer than two)."""
    values = np.asarray(frames, dtype=np.float64)
    seen = values[np.isfinite(values)]
    return float(seen.std()) if seen.size >= 2 else 0.0


def flat_reason(name: str, frames: np.ndarray, metadata: Mapping[str, Any],
                fraction: float = DEFAULT_FLAT_FRACTION) -> tuple[str, dict[str, Any]]:
    """('' or why the prediction is flat, the figures) for one module's raw per-frame prediction."""
    spread = prediction_spread(frames)
    reference, source = reference_spread(metadata)
    figures: dict[str, Any] = {"raw_spread": round(spread, 6),
                               "reference_spread": None if reference is None else round(reference, 6),
                               "reference_source": source, "flat_fraction": fraction}
    if fraction <= 0 or np.isfinite(frames).sum() < 2:
        return "", figures
    if reference is None:
        if spread >= FALLBACK_FLAT_STD:
            return "", figures
        return (f"{name}: no variation in the prediction: its spread over this video ({spread:.2g}) is under "
                f"{FALLBACK_FLAT_STD:g} (its model records no spread of its own): not re-scaled, weighed 0"), figures
    if spread >= fraction * reference:
        return "", figures
    return (f"{name}: no variation in the prediction: its spread over this video ({spread:.2g}) is "
            f"{spread / reference:.1%} of the spread on validation videos ({reference:.2g}; flat under "
            f"{fraction:.0%}): not re-scaled, weighed 0"), figures


class LoudnessMeter:
    """The loudest 40 ms frame of an audio track fed in chunks (float samples in [-1, 1])."""

    def __init__(self, sample_rate: int, frame_s: float = 0.04) -> None:
        self.frame = max(1, int(round(sample_rate * frame_s)))
        self.rest = np.zeros(0, np.float64)
        self.peak = 0.0
        self.loudest_rms = 0.0

    def feed(self, chunk: np.ndarray) -> None:
        samples = np.concatenate([self.rest, np.asarray(chunk, dtype=np.float64)])
        if samples.size:
            self.peak = max(self.peak, float(np.abs(samples).max()))
        whole = samples.size // self.frame * self.frame
        if whole:
            rms = np.sqrt((samples[:whole].reshape(-1, self.frame) ** 2).mean(axis=1))
            self.loudest_rms = max(self.loudest_rms, float(rms.max()))
        self.rest = samples[whole:]

    @property
    def loudest_dbfs(self) -> float:
        return 20.0 * float(np.log10(self.loudest_rms)) if self.loudest_rms > 0 else float("-inf")

    def reason(self, name: str = "audio") -> str:
        """'' when some 40 ms frame is louder than :data:`SILENCE_DBFS`, else why there is nothing to hear."""
        if self.loudest_dbfs > SILENCE_DBFS:
            return ""
        level = "digital silence" if self.peak == 0.0 else f"loudest 40 ms at {self.loudest_dbfs:.0f} dBFS"
        return (f"{name}: no signal in the input: the audio track is silent ({level}, peak {self.peak:.2g}; "
                f"silent under {SILENCE_DBFS:.0f} dBFS)")


class MotionMeter:
    """Whether the listener region's picture ever changes: frozen video and still images carry no signal.

    Each frame fed is shrunk to :data:`MOTION_THUMB` and compared with the first: the picture moved when more
    than :data:`MOTION_SHARE` of the thumbnail's pixels differ by more than :data:`MOTION_LEVEL` grey levels
    on some frame (codec noise on a frozen picture stays under both; a head turn or a blink does not).
    """

    def __init__(self) -> None:
        self.first: np.ndarray | None = None
        self.frames = 0
        self.max_share = 0.0

    def feed(self, grey: np.ndarray) -> None:
        self.frames += 1
        if self.max_share > MOTION_SHARE:  # it moved: the answer is known, nothing more to compute
            return
        # every k-th pixel first (a 1480x720 region: ~0.05 ms instead of ~2.7 ms for a full-area resize)
        step = max(1, min(grey.shape[0] // (2 * MOTION_THUMB[1]), grey.shape[1] // (2 * MOTION_THUMB[0])))
        thumb = cv2.resize(np.ascontiguousarray(grey[::step, ::step]), MOTION_THUMB,
                           interpolation=cv2.INTER_AREA).astype(np.int16)
        if self.first is None:
            self.first = thumb
            return
        self.max_share = max(self.max_share, float((np.abs(thumb - self.first) > MOTION_LEVEL).mean()))

    def reason(self, name: str) -> str:
        """'' when the picture moved, else why there is nothing to see change."""
        if self.frames <= 1:
            return f"{name}: no signal in the input: a single frame (a still image is not a video)"
        if self.max_share > MOTION_SHARE:
            return ""
        return (f"{name}: no variation in the input: the picture never changes over {self.frames} frames "
                f"(a frozen video; at most {self.max_share:.2%} of the listener region changed)")
