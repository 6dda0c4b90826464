"""Face-landmarks modality: 25-frame windows of the 136 dlib landmark series, z-normalised per video.

Every frame with a face gets dlib's 68 points (x, y), fitted within a box that the tracker moves with the
landmarks and re-detects every ``detect_every`` frames or when the fit drifts (:mod:`shared.face_tracking`),
so a frame costs about the shape predictor alone (~2 ms) rather than a HOG detection (~20 ms at 640x360).
Coordinates are pixels of the (listener-cropped) frame; each of the 136 series is z-normalised over the
video's present frames, which removes where the listener sits and how large the face is in the picture.

Frames without a face are ``missing`` (no window, NaN after :meth:`LandmarksModality.to_frames`); windows
reaching back over a few missing frames repeat the last points seen. A window is labelled with its 25th
frame; the start of the video is padded with the first frame's points (constant padding).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.crops import parse_optional_box
from shared.face_tracking import N_LANDMARKS, FaceTracker, TrackerConfig
from shared.media import iter_frames
from shared.modalities.base import Windows
from shared.modalities.frame_windows import (
    LazyWindows,
    anchors,
    anchors_to_grid,
    hold_last,
    predict_every,
    video_zscore,
    window_index,
)
from shared.settings import get_settings

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "window": 25,  # frames per window; the label is the last one
    **{name: getattr(TrackerConfig(), name) for name in TrackerConfig.__dataclass_fields__},
}
INPUT_LANDMARKS = "landmarks"
N_SERIES = 2 * N_LANDMARKS  # x0, y0, x1, y1, ... x67, y67


def extract_landmarks(video: Path, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """(n_frames, 136) float32 raw coordinates (NaN rows where missing), the missing mask, HOG runs."""
    tracker = FaceTracker(TrackerConfig.from_params(params), landmarks=True)
    rows: list[np.ndarray] = []
    nan_row = np.full(N_SERIES, np.nan, dtype=np.float32)
    for grey in iter_frames(video, gray=True, crop=parse_optional_box(get_settings().listener_crop)):
        seen = tracker.update(grey)
        rows.append(nan_row if seen.landmarks is None else seen.landmarks.reshape(N_SERIES))
    points = np.stack(rows) if rows else np.zeros((0, N_SERIES), dtype=np.float32)
    return points, np.isnan(points[:, 0]), tracker.detections


class LandmarksModality:
    name = "landmarks"

    def default_params(self) -> dict[str, Any]:
        """Preprocessing defaults; training records them (with any overrides) in the model's metadata."""
        return dict(DEFAULT_PARAMS)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """Landmarks of every frame, then (n, 25, 136) windows z-normalised per series over the video."""
        p = {**DEFAULT_PARAMS, **(params or {})}
        length = int(p["window"])
        started = time.monotonic()
        points, missing, detections = extract_landmarks(video, p)
        ends = anchors(~missing, predict_every(p))
        if ends.size:
            mean, std = video_zscore(points, ~missing, per_feature=True)
            index = window_index(ends, length, hold_last(~missing))
        else:  # no face anywhere: no windows, every frame missing
            mean, std, index = np.zeros(N_SERIES), np.ones(N_SERIES), np.zeros((0, length), dtype=np.int64)
        info = {"detections": detections, "missing_frames": int(missing.sum()),
                "seconds": round(time.monotonic() - started, 3)}
        logger.info("landmark windows ready", extra={"video": str(video), "windows": len(ends), **info})
        return Windows(inputs={INPUT_LANDMARKS: LazyWindows(points, index, mean=mean, std=std)},
                       label_frames=ends, n_frames=len(points), missing=missing, info=info)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Window predictions anchor at their label frames; linear in between; NaN on missing frames."""
        return anchors_to_grid(predictions, windows.label_frames, windows.n_frames, windows.missing)


MODALITY = LandmarksModality()
