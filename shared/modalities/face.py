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

from typing import Any

import numpy as np

from shared.face_tracking import FaceObservation, crop_box
from shared.media import VideoInfo
from shared.modalities.base import subject_index
from shared.modalities.frame_windows import FrameRows, LazyWindows
from shared.modalities.vision import TRACKER_PARAMS, TrackedFrames, TrackedModality

# Preprocessing defaults (recorded in the model metadata, so inference uses what training used).
DEFAULT_PARAMS: dict[str, Any] = {
    "window": 10,  # frames per window; the label is the last one
    "size": 48,  # crop side in pixels
    "margin": 0.1,  # the detector box grown by this fraction of its size on each side (chin, brows)
    **TRACKER_PARAMS,
}
INPUT_FACE = "face"
INPUT_SUBJECT = "subject"


class FaceFrames(TrackedFrames):
    """The face modality's per-frame work, fed one grey (listener-cropped) frame at a time.

    :meth:`FaceModality.prepare` feeds it from its own decode; ``empathy analyze`` feeds it from the one
    decode it shares among the vision modalities (:mod:`shared.modalities.frame_stream`), so both paths
    run exactly this code.
    """

    name = "face"
    per_feature = False
    DEFAULTS = DEFAULT_PARAMS  # a subclass that crops the face its own way brings its own

    def __init__(self, info: VideoInfo, *, subject: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(info, subject=subject, params={**self.DEFAULTS, **(params or {})})
        self.size, self.margin = int(self.p["size"]), float(self.p["margin"])
        self.crops = FrameRows(info.n_frames, (self.size, self.size), np.uint8)  # missing frames stay zeros, never read
        self.present = FrameRows(info.n_frames, (), bool)

    def keep(self, seen: FaceObservation, grey: np.ndarray) -> None:
        self.present.append(not seen.missing)
        if seen.missing:
            self.crops.skip()
        else:
            self.crops.append(crop_box(grey, seen.box, self.size, margin=self.margin))

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        return self.crops.array, ~self.present.array

    def inputs(self, windows: LazyWindows, n_windows: int) -> dict[str, Any]:
        """The (n, 10, 48, 48) crops and the listener's row of the subject table."""
        who = subject_index(self.subject, self.p.get("known_subjects") or [])
        return {INPUT_FACE: windows, INPUT_SUBJECT: np.full(n_windows, who, dtype=np.int32)}


class FaceModality(TrackedModality):
    name = "face"
    DEFAULT_PARAMS = DEFAULT_PARAMS
    FRAMES = FaceFrames


MODALITY = FaceModality()
