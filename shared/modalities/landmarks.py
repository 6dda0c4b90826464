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

from typing import Any

import numpy as np

from shared.face_tracking import N_LANDMARKS, FaceObservation
from shared.media import VideoInfo
from shared.modalities.frame_windows import FrameRows, LazyWindows
from shared.modalities.vision import TRACKER_PARAMS, TrackedFrames, TrackedModality

DEFAULT_PARAMS: dict[str, Any] = {
    "window": 25,  # frames per window; the label is the last one
    **TRACKER_PARAMS,
}
INPUT_LANDMARKS = "landmarks"
N_SERIES = 2 * N_LANDMARKS  # x0, y0, x1, y1, ... x67, y67


class LandmarkFrames(TrackedFrames):
    """The landmarks modality's per-frame work, fed one grey (listener-cropped) frame at a time.

    :meth:`LandmarksModality.prepare` feeds it from its own decode; ``empathy analyze`` from the decode it
    shares among the vision modalities (:mod:`shared.modalities.frame_stream`): the same code either way.
    """

    name = "landmarks"
    per_feature = True  # each of the 136 series z-normalised on its own

    def __init__(self, info: VideoInfo, *, subject: int = 0, params: dict[str, Any] | None = None) -> None:
        super().__init__(info, subject=subject, params={**DEFAULT_PARAMS, **(params or {})}, landmarks=True)
        self.points = FrameRows(info.n_frames, (N_SERIES,), np.float32, fill=np.nan)  # NaN rows = missing

    def keep(self, seen: FaceObservation, grey: np.ndarray) -> None:
        if seen.landmarks is None:
            self.points.skip()
        else:
            self.points.append(seen.landmarks.reshape(N_SERIES))

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        points = self.points.array
        return points, np.isnan(points[:, 0])

    def inputs(self, windows: LazyWindows, n_windows: int) -> dict[str, Any]:
        """The (n, 25, 136) landmark series."""
        return {INPUT_LANDMARKS: windows}


class LandmarksModality(TrackedModality):
    name = "landmarks"
    DEFAULT_PARAMS = DEFAULT_PARAMS
    FRAMES = LandmarkFrames


MODALITY = LandmarksModality()
