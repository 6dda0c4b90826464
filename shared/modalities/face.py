"""Raw-face modality: 10-frame windows of grey 48x48 face crops, z-normalised per video.

The face is detected with dlib's HOG every ``detect_every`` frames (the paper: 10) and the smoothed box is
carried in between (:mod:`shared.face_tracking`). Decoding streams frame by frame; only the 48x48 uint8
crops are kept (2.3 KB a frame), normalisation statistics are taken over them at the end, and float windows
are built lazily (:class:`LazyWindows`), so memory is O(frames x crop) rather than O(windows x window).

Frames where the tracker has no face are ``missing``: they get no window of their own (nothing to predict
from) and are NaN after :meth:`FaceModality.to_frames`. Windows that reach back over a few missing frames
repeat the last crop seen. Each window is labelled with its last (10th) frame; the first frames of the video
are padded with the first crop, so every visible frame can be an anchor.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.crops import parse_optional_box
from shared.face_tracking import FaceTracker, TrackerConfig, crop_box
from shared.media import iter_frames
from shared.modalities.base import Windows, subject_index
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

# Preprocessing defaults (recorded in the model metadata, so inference uses what training used).
DEFAULT_PARAMS: dict[str, Any] = {
    "window": 10,  # frames per window; the label is the last one
    "size": 48,  # crop side in pixels
    "margin": 0.1,  # the detector box grown by this fraction of its size on each side (chin, brows)
    **{name: getattr(TrackerConfig(), name) for name in TrackerConfig.__dataclass_fields__},
}
INPUT_FACE = "face"
INPUT_SUBJECT = "subject"


class FaceModality:
    name = "face"

    def default_params(self) -> dict[str, Any]:
        """Preprocessing defaults; training records them (with any overrides) in the model's metadata."""
        return dict(DEFAULT_PARAMS)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """Track the face through the video, crop it, and build the (n, 10, 48, 48) windows."""
        p = {**DEFAULT_PARAMS, **(params or {})}
        size, margin, length = int(p["size"]), float(p["margin"]), int(p["window"])
        started = time.monotonic()
        tracker = FaceTracker(TrackerConfig.from_params(p))
        crops: list[np.ndarray] = []
        present: list[bool] = []
        blank = np.zeros((size, size), dtype=np.uint8)  # never read: missing frames are not window content
        for grey in iter_frames(video, gray=True, crop=parse_optional_box(get_settings().listener_crop)):
            seen = tracker.update(grey)
            present.append(not seen.missing)
            crops.append(blank if seen.missing else crop_box(grey, seen.box, size, margin=margin))
        n_frames = len(crops)
        missing = ~np.asarray(present, dtype=bool)
        features = np.stack(crops) if crops else np.zeros((0, size, size), dtype=np.uint8)
        ends = anchors(~missing, predict_every(p))
        if ends.size:
            mean, std = video_zscore(features, ~missing, per_feature=False)
            index = window_index(ends, length, hold_last(~missing))
        else:  # no face anywhere: no windows, every frame missing
            mean, std, index = 0.0, 1.0, np.zeros((0, length), dtype=np.int64)
        windows = LazyWindows(features, index, mean=mean, std=std)
        who = subject_index(subject, p.get("known_subjects") or [])
        info = {"detections": tracker.detections, "missing_frames": int(missing.sum()),
                "seconds": round(time.monotonic() - started, 3)}
        logger.info("face windows ready", extra={"video": str(video), "windows": len(ends), **info})
        return Windows(inputs={INPUT_FACE: windows, INPUT_SUBJECT: np.full(len(ends), who, dtype=np.int32)},
                       label_frames=ends, n_frames=n_frames, missing=missing, info=info)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Window predictions anchor at their label frames; linear in between; NaN on missing frames."""
        return anchors_to_grid(predictions, windows.label_frames, windows.n_frames, windows.missing)


MODALITY = FaceModality()
