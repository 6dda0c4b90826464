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
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from shared.crops import ListenerRegion, region_for_video
from shared.face_tracking import N_LANDMARKS, FaceTracker, TrackerConfig
from shared.media import VideoInfo, probe
from shared.modalities.base import Windows
from shared.modalities.frame_stream import decode_threads, listener_frames, prefetched
from shared.modalities.frame_windows import (
    FrameRows,
    LazyWindows,
    anchors,
    anchors_to_grid,
    hold_last,
    predict_every,
    tracking_notes,
    video_zscore,
    window_index,
)

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "window": 25,  # frames per window; the label is the last one
    **{name: getattr(TrackerConfig(), name) for name in TrackerConfig.__dataclass_fields__},
}
INPUT_LANDMARKS = "landmarks"
N_SERIES = 2 * N_LANDMARKS  # x0, y0, x1, y1, ... x67, y67


class LandmarkFrames:
    """The landmarks modality's per-frame work, fed one grey (listener-cropped) frame at a time.

    :meth:`LandmarksModality.prepare` feeds it from its own decode; ``empathy analyze`` from the decode it
    shares among the vision modalities (:mod:`shared.modalities.frame_stream`): the same code either way.
    """

    def __init__(self, info: VideoInfo, *, subject: int = 0, params: dict[str, Any] | None = None) -> None:
        self.p = {**DEFAULT_PARAMS, **(params or {})}
        n_frames = info.n_frames
        self.region: ListenerRegion = region_for_video(self.p, subject, info.width, info.height)
        self.frame_size = (info.width, info.height)
        self.tracker = FaceTracker(TrackerConfig.from_params(self.p), landmarks=True)
        self.points = FrameRows(n_frames, (N_SERIES,), np.float32, fill=np.nan)  # NaN rows = missing
        self.started = time.monotonic()

    def feed(self, grey: np.ndarray) -> None:
        seen = self.tracker.update(grey)
        if seen.landmarks is None:
            self.points.skip()
        else:
            self.points.append(seen.landmarks.reshape(N_SERIES))

    def finish(self, video: Path | str = "") -> Windows:
        """(n, 25, 136) windows z-normalised per series over the video, anchored every ``predict_every``-th frame."""
        length = int(self.p["window"])
        points = self.points.array
        missing = np.isnan(points[:, 0])
        ends = anchors(~missing, predict_every(self.p))
        if ends.size:
            mean, std = video_zscore(points, ~missing, per_feature=True)
            index = window_index(ends, length, hold_last(~missing))
        else:  # no face anywhere: no windows, every frame missing
            mean, std, index = np.zeros(N_SERIES), np.ones(N_SERIES), np.zeros((0, length), dtype=np.int64)
        info = {"detections": self.tracker.detections, "missing_frames": int(missing.sum()),
                "seconds": round(time.monotonic() - self.started, 3),
                **tracking_notes("landmarks", self.region, self.tracker, self.frame_size)}
        logger.info("landmark windows ready", extra={"video": str(video), "windows": len(ends), **info})
        return Windows(inputs={INPUT_LANDMARKS: LazyWindows(points, index, mean=mean, std=std)},
                       label_frames=ends, n_frames=len(points), missing=missing, info=info)


class LandmarksModality:
    name = "landmarks"

    def default_params(self) -> dict[str, Any]:
        """Preprocessing defaults; training records them (with any overrides) in the model's metadata."""
        return dict(DEFAULT_PARAMS)

    def frame_consumer(self, video: Path, *, subject: int, params: dict[str, Any] | None = None) -> LandmarkFrames:
        """The per-frame part, for a decode shared with other modalities (frames: grey, listener crop)."""
        return LandmarkFrames(probe(video), subject=subject, params=params)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """Landmarks of every frame, then (n, 25, 136) windows z-normalised per series over the video."""
        frames = self.frame_consumer(video, subject=subject, params=params)
        with closing(prefetched(listener_frames(video, frames.region.box, decode_threads(params)))) as decoded:  # an error here stops the decoder at once
            for grey in decoded:
                frames.feed(grey)
        return frames.finish(video)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Window predictions anchor at their label frames; linear in between; NaN on missing frames."""
        return anchors_to_grid(predictions, windows.label_frames, windows.n_frames, windows.missing)


MODALITY = LandmarksModality()
