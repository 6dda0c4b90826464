"""Full-body modality: 16-frame windows of a fixed grey 128x128 crop of the listener, every 5th frame.

The paper crops each video with a hand-picked box around the listener, takes every 5th frame (so 16 frames
span ~3 s) and labels a window with its last frame. Here the box comes from ``EMPATHY_BODY_CROP`` (one box
for a data set, or one per subject) or, when that is empty, automatically from the first seconds of the
video: a box around the face HOG finds there, reaching from above the head down to the bottom of the
frame and 3.5 face heights wide (a seated listener's upper body and arms). A video without any detectable face in those seconds uses
the whole (listener) frame and says so in the log.

Memory: only every 5th frame is converted, cropped and resized by the decoder and kept as a 128x128 uint8
image (16 KB: 24 MB for a 5-minute video); a float32 window is 1 MB, so windows are built lazily per batch
(:class:`LazyWindows`) and never stacked for a whole video. Normalisation is one mean/std over the video's
crops. The body is always in the fixed crop, so this modality marks no frame missing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.crops import Box, box_for_subject, compose, parse_optional_box, parse_subject_boxes
from shared.face_tracking import detect_faces
from shared.media import iter_frames, probe
from shared.modalities.base import Windows
from shared.modalities.frame_windows import (
    LazyWindows,
    anchors,
    anchors_to_grid,
    predict_every,
    video_zscore,
    window_index,
)
from shared.settings import get_settings

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "window": 16,  # downsampled frames per window; the label is the last one
    "downsample": 5,  # keep every 5th frame (and label): 16 frames span 3 s
    "size": 128,  # crop side in pixels
    "auto_crop_seconds": 2.0,  # how much of the start the automatic crop looks at
}
INPUT_BODY = "body"

# Automatic crop around a face box of height h: from AUTO_ABOVE * h above the face's top down to at most
# AUTO_BELOW * h below it, AUTO_WIDTH * h wide and centred on the face (clipped to the frame): a seated
# listener's head, torso and arms, even when the arms open wide.
AUTO_ABOVE = 0.8
AUTO_BELOW = 6.0
AUTO_WIDTH = 3.5
AUTO_DETECT_EVERY = 5  # frames between the detections the automatic crop takes its median from


def body_box_around_face(face: np.ndarray, width: int, height: int) -> Box:
    """Fraction box of a seated listener's upper body given their face box (pixels of a width x height frame)."""
    x0, y0, x1, y1 = face
    face_h = y1 - y0
    top = max(0.0, y0 - AUTO_ABOVE * face_h)
    bottom = min(float(height), y0 + AUTO_BELOW * face_h)
    side = min(AUTO_WIDTH * face_h, float(width))
    left = min(max(0.0, (x0 + x1) / 2.0 - side / 2.0), width - side)
    return (left / width, top / height, (left + side) / width, bottom / height)


def auto_crop(video: Path, listener: Box | None, seconds: float) -> Box | None:
    """Box (fractions of the listener region) around the median face of the first ``seconds``; None if no face."""
    fps = get_settings().fps
    n = max(1, int(round(seconds * fps)))
    faces: list[np.ndarray] = []
    shape = (0, 0)
    for i, grey in enumerate(iter_frames(video, gray=True, crop=listener, every=AUTO_DETECT_EVERY)):
        if i * AUTO_DETECT_EVERY >= n:
            break
        shape = grey.shape
        boxes = detect_faces(grey)
        if len(boxes):
            faces.append(boxes[0])
    if not faces:
        return None
    return body_box_around_face(np.median(np.stack(faces), axis=0), shape[1], shape[0])


def body_crop(video: Path, subject: int, params: dict[str, Any]) -> tuple[Box, str]:
    """The crop (fractions of the full frame) for this video and where it came from."""
    listener = parse_optional_box(get_settings().listener_crop)
    configured = box_for_subject(parse_subject_boxes(get_settings().body_crop), subject)
    if configured is not None:
        return compose(listener, configured), "configured"
    found = auto_crop(video, listener, float(params["auto_crop_seconds"]))
    if found is None:
        logger.warning("no face in the first seconds: the body crop is the whole listener frame",
                       extra={"video": str(video)})
        return compose(listener, (0.0, 0.0, 1.0, 1.0)), "whole frame"
    return compose(listener, found), "automatic"


class BodyModality:
    name = "body"

    def default_params(self) -> dict[str, Any]:
        """Preprocessing defaults; training records them (with any overrides) in the model's metadata."""
        return dict(DEFAULT_PARAMS)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """(n, 16, 128, 128) windows over every 5th frame of the fixed crop, anchored every k-th kept frame."""
        p = {**DEFAULT_PARAMS, **(params or {})}
        length, step, size = int(p["window"]), int(p["downsample"]), int(p["size"])
        started = time.monotonic()
        box, origin = body_crop(video, subject, p)
        n_frames = probe(video).n_frames
        crops = np.stack(list(iter_frames(video, gray=True, crop=box, size=(size, size), every=step)))
        positions = anchors(np.ones(len(crops), dtype=bool), predict_every(p))
        mean, std = video_zscore(crops, np.ones(len(crops), dtype=bool), per_feature=False)
        index = window_index(positions, length, np.arange(len(crops)))
        info = {"crop": [round(float(v), 4) for v in box], "crop_from": origin,
                "seconds": round(time.monotonic() - started, 3)}
        logger.info("body windows ready", extra={"video": str(video), "windows": len(positions), **info})
        return Windows(inputs={INPUT_BODY: LazyWindows(crops, index, mean=mean, std=std)},
                       label_frames=positions * step, n_frames=n_frames, info=info)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Window predictions anchor at their label frames (multiples of 5); linear in between, the last held."""
        return anchors_to_grid(predictions, windows.label_frames, windows.n_frames, windows.missing,
                               hold_end=True)


MODALITY = BodyModality()
