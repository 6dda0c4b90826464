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
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from shared.crops import ListenerRegion, region_for_video
from shared.face_tracking import FaceTracker, TrackerConfig, crop_box
from shared.media import VideoInfo, probe
from shared.modalities.base import Windows, subject_index
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

# Preprocessing defaults (recorded in the model metadata, so inference uses what training used).
DEFAULT_PARAMS: dict[str, Any] = {
    "window": 10,  # frames per window; the label is the last one
    "size": 48,  # crop side in pixels
    "margin": 0.1,  # the detector box grown by this fraction of its size on each side (chin, brows)
    **{name: getattr(TrackerConfig(), name) for name in TrackerConfig.__dataclass_fields__},
}
INPUT_FACE = "face"
INPUT_SUBJECT = "subject"


class FaceFrames:
    """The face modality's per-frame work, fed one grey (listener-cropped) frame at a time.

    :meth:`FaceModality.prepare` feeds it from its own decode; ``empathy analyze`` feeds it from the one
    decode it shares among the vision modalities (:mod:`shared.modalities.frame_stream`), so both paths
    run exactly this code.
    """

    def __init__(self, info: VideoInfo, *, subject: int, params: dict[str, Any] | None = None) -> None:
        self.p = {**DEFAULT_PARAMS, **(params or {})}
        n_frames = info.n_frames
        self.region: ListenerRegion = region_for_video(self.p, subject, info.width, info.height)
        self.frame_size = (info.width, info.height)
        self.size, self.margin = int(self.p["size"]), float(self.p["margin"])
        self.subject = subject
        self.tracker = FaceTracker(TrackerConfig.from_params(self.p))
        self.crops = FrameRows(n_frames, (self.size, self.size), np.uint8)  # missing frames stay zeros, never read
        self.present = FrameRows(n_frames, (), bool)
        self.started = time.monotonic()

    def feed(self, grey: np.ndarray) -> None:
        seen = self.tracker.update(grey)
        self.present.append(not seen.missing)
        if seen.missing:
            self.crops.skip()
        else:
            self.crops.append(crop_box(grey, seen.box, self.size, margin=self.margin))

    def finish(self, video: Path | str = "") -> Windows:
        """The (n, 10, 48, 48) windows, anchored every ``predict_every``-th visible frame."""
        length = int(self.p["window"])
        features, missing = self.crops.array, ~self.present.array
        ends = anchors(~missing, predict_every(self.p))
        if ends.size:
            mean, std = video_zscore(features, ~missing, per_feature=False)
            index = window_index(ends, length, hold_last(~missing))
        else:  # no face anywhere: no windows, every frame missing
            mean, std, index = 0.0, 1.0, np.zeros((0, length), dtype=np.int64)
        windows = LazyWindows(features, index, mean=mean, std=std)
        who = subject_index(self.subject, self.p.get("known_subjects") or [])
        info = {"detections": self.tracker.detections, "missing_frames": int(missing.sum()),
                "seconds": round(time.monotonic() - self.started, 3),
                **tracking_notes("face", self.region, self.tracker, self.frame_size)}
        logger.info("face windows ready", extra={"video": str(video), "windows": len(ends), **info})
        return Windows(inputs={INPUT_FACE: windows, INPUT_SUBJECT: np.full(len(ends), who, dtype=np.int32)},
                       label_frames=ends, n_frames=len(features), missing=missing, info=info)


class FaceModality:
    name = "face"

    def default_params(self) -> dict[str, Any]:
        """Preprocessing defaults; training records them (with any overrides) in the model's metadata."""
        return dict(DEFAULT_PARAMS)

    def frame_consumer(self, video: Path, *, subject: int, params: dict[str, Any] | None = None) -> FaceFrames:
        """The per-frame part, for a decode shared with other modalities (frames: grey, listener crop)."""
        return FaceFrames(probe(video), subject=subject, params=params)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """Track the face through the video, crop it, and build the (n, 10, 48, 48) windows."""
        frames = self.frame_consumer(video, subject=subject, params=params)
        with closing(prefetched(listener_frames(video, frames.region.box, decode_threads(params)))) as decoded:  # an error here stops the decoder at once
            for grey in decoded:
                frames.feed(grey)
        return frames.finish(video)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Window predictions anchor at their label frames; linear in between; NaN on missing frames."""
        return anchors_to_grid(predictions, windows.label_frames, windows.n_frames, windows.missing)


MODALITY = FaceModality()
