"""Full-body modality: 16-frame windows of a fixed grey 128x128 crop of the listener, every 5th frame.

The paper crops each video with a hand-picked box around the listener, takes every 5th frame (so 16 frames
span ~3 s) and labels a window with its last frame. Here the box comes from the ``body_crop`` parameter (one
box for a data set, or one per subject: ``EMPATHY_BODY_CROP``, recorded in the model's metadata at training,
overridden at inference by a non-empty setting) or, when that is empty, automatically from the first seconds
of the video: a box around the face HOG finds there, reaching from above the head down to the bottom of the
frame and 3.5 face heights wide (a seated listener's upper body and arms). A video without any detectable face in those seconds uses
the whole listener region and says so in the job's notes. The listener region (see :mod:`shared.crops`) is the
one the face and landmarks modalities search, and the automatic crop follows the same person they follow
(the largest face at the first detection), so all three analyse the listener even beside a larger face.

Memory: only every 5th frame is converted, cropped and resized by the decoder and kept as a 128x128 uint8
image (16 KB: 24 MB for a 5-minute video); a float32 window is 1 MB, so windows are built lazily per batch
(:class:`LazyWindows`) and never stacked for a whole video. Normalisation is one mean/std over the video's
crops. The body is always in the fixed crop, so this modality marks no frame missing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from shared.crops import Box, ListenerRegion, box_for_subject, compose, parse_subject_boxes, region_for_video
from shared.face_tracking import HOG_FACE_PX, MAX_JUMP, detect_faces
from shared.media import FPS, crop_pixels, iter_frames, probe
from shared.modalities.base import Windows
from shared.modalities.frame_stream import decode_threads
from shared.modalities.frame_windows import (
    FrameRows,
    LazyWindows,
    anchors,
    predict_every,
    video_zscore,
    window_index,
)
from shared.modalities.vision import VisionModality

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.values import PipelineOptions

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "window": 16,  # downsampled frames per window; the label is the last one
    "downsample": 5,  # keep every 5th frame (and label): 16 frames span 3 s
    "size": 128,  # crop side in pixels
    "auto_crop_seconds": 2.0,  # how much of the start the automatic crop looks at
    "min_face_px": HOG_FACE_PX,  # smallest face the automatic crop's detections find (see face_tracking)
    "body_crop": "",  # EMPATHY_BODY_CROP at training: '' = automatic, a box, or per subject '1=...;*=...'
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


def detection_frames(seconds: float) -> int:
    """How many frames at the start of a video the automatic crop looks at (frames are decoded at 25 fps)."""
    return max(1, int(round(seconds * FPS)))


class ListenerFaces:
    """The faces the automatic crop is taken from: one person throughout, as the face tracker follows one.

    The first detection's largest face is the listener (the rule :class:`shared.face_tracking.FaceTracker`
    starts with); later detections keep the face nearest to it, so a second person in the region never
    pulls the crop half-way between the two. ``crowded`` counts detections that saw more than one face.
    """

    def __init__(self, min_face_px: int) -> None:
        self.min_face_px = min_face_px
        self.faces: list[np.ndarray] = []
        self.crowded = 0
        self.max_faces = 0
        self.shape: tuple[int, ...] = (0, 0)

    def add(self, grey: np.ndarray) -> None:
        self.shape = grey.shape
        boxes = detect_faces(grey, min_face_px=self.min_face_px)
        if not len(boxes):
            return
        self.crowded += int(len(boxes) > 1)
        self.max_faces = max(self.max_faces, len(boxes))
        if not self.faces:
            self.faces.append(boxes[0])
            return
        first = self.faces[0]
        centre, size = (first[:2] + first[2:]) / 2.0, max(first[3] - first[1], 1.0)
        distances = [np.linalg.norm((b[:2] + b[2:]) / 2.0 - centre) / size for b in boxes]
        nearest = int(np.argmin(distances))
        if distances[nearest] <= MAX_JUMP or not self.crowded:
            self.faces.append(boxes[nearest])

    def box(self) -> Box | None:
        return crop_around(self.faces, self.shape)

    def notes(self, region: ListenerRegion, frame_size: tuple[int, int], origin: str) -> list[str]:
        notes = [region.note]
        if self.crowded:
            notes.append(f"listener ambiguous for the body crop: {self.max_faces} faces in the listener region; "
                         "the crop follows the largest face of the first detection")
        if origin == "whole frame":
            notes.append(f"body: no face in the first seconds of the listener region ({region.describe(*frame_size)}):"
                         " the body crop is the whole region")
        return notes


def crop_around(faces: list[np.ndarray], shape: tuple[int, ...]) -> Box | None:
    """Box (fractions of a frame of ``shape``) around the median of the faces found; None when there is none."""
    if not faces:
        return None
    return body_box_around_face(np.median(np.stack(faces), axis=0), shape[1], shape[0])


def auto_crop(video: Path, listener: Box | None, seconds: float, min_face_px: int, threads: int = 1) -> ListenerFaces:
    """The listener's faces in the first ``seconds`` (their :meth:`ListenerFaces.box` is the crop, or None)."""
    n = detection_frames(seconds)
    faces = ListenerFaces(min_face_px)
    for i, grey in enumerate(iter_frames(video, gray=True, crop=listener, every=AUTO_DETECT_EVERY, threads=threads)):
        if i * AUTO_DETECT_EVERY >= n:
            break
        faces.add(grey)
    return faces


def configured_crop(params: dict[str, Any], subject: int) -> Box | None:
    """The ``body_crop`` box of this subject (fractions of the listener region), if any."""
    return box_for_subject(parse_subject_boxes(str(params.get("body_crop") or "")), subject)


def full_frame_crop(listener: Box | None, inner: Box | None, origin: str, video: Path | str) -> tuple[Box, str]:
    """The crop as fractions of the full frame and where it came from ("whole frame" when nothing was found)."""
    if inner is None:
        logger.warning("no face in the first seconds: the body crop is the whole listener frame",
                       extra={"video": str(video)})
        return compose(listener, (0.0, 0.0, 1.0, 1.0)), "whole frame"
    return compose(listener, inner), origin


def body_crop(video: Path, subject: int, params: dict[str, Any]) -> tuple[Box, str, list[str]]:
    """The crop (fractions of the full frame) for this video, where it came from, and the notes for the job."""
    info = probe(video)
    region = region_for_video(params, subject, info.width, info.height)
    configured = configured_crop(params, subject)
    if configured is not None:
        return compose(region.box, configured), "configured", [region.note]
    faces = auto_crop(video, region.box, float(params["auto_crop_seconds"]), int(params["min_face_px"]),
                      decode_threads(params))
    box, origin = full_frame_crop(region.box, faces.box(), "automatic", video)
    return box, origin, faces.notes(region, (info.width, info.height), origin)


def body_windows(crops: np.ndarray, n_frames: int, p: dict[str, Any], info: dict[str, Any],
                 video: Path | str) -> Windows:
    """(n, 16, size, size) lazy windows over the kept frames, anchored every ``predict_every``-th kept frame."""
    length, step = int(p["window"]), int(p["downsample"])
    positions = anchors(np.ones(len(crops), dtype=bool), predict_every(p))
    mean, std = video_zscore(crops, np.ones(len(crops), dtype=bool), per_feature=False)
    index = window_index(positions, length, np.arange(len(crops)))
    logger.info("body windows ready", extra={"video": str(video), "windows": len(positions), **info})
    return Windows(inputs={INPUT_BODY: LazyWindows(crops, index, mean=mean, std=std)},
                   label_frames=positions * step, n_frames=n_frames, info=info)


class BodyFrames:
    """The body modality's per-frame work over frames decoded for all vision modalities (``empathy analyze``).

    It receives every grey listener-cropped frame (what face and landmarks need) and keeps every 5th, cut to
    the body box and resized: the same pixels :meth:`BodyModality.prepare` has its own decoder cut
    (:func:`shared.media.crop_pixels` is the one rounding rule). With an automatic crop, the kept frames of
    the first ``auto_crop_seconds`` wait (at most a few full frames) until the faces found in them fix the box.
    """

    def __init__(self, video: Path, *, subject: int, params: dict[str, Any] | None = None) -> None:
        self.p = {**DEFAULT_PARAMS, **(params or {})}
        self.video = video
        self.step, self.size = int(self.p["downsample"]), int(self.p["size"])
        info = probe(video)
        self.n_frames, self.frame_size = info.n_frames, (info.width, info.height)
        self.region: ListenerRegion = region_for_video(self.p, subject, info.width, info.height)
        self.listener = self.region.box
        self.offset = crop_pixels(self.listener, *self.frame_size)[:2]  # the listener region's corner, pixels
        configured = configured_crop(self.p, subject)
        self.box: Box | None = compose(self.listener, configured) if configured is not None else None
        self.origin = "configured"
        self.detect_until = detection_frames(float(self.p["auto_crop_seconds"]))
        self.faces = ListenerFaces(int(self.p["min_face_px"]))
        self.waiting: list[np.ndarray] = []  # kept frames (listener region) until the automatic box is known
        self.crops = FrameRows(-(-self.n_frames // self.step), (self.size, self.size), np.uint8)
        self.frame = 0
        self.started = time.monotonic()

    def _cut(self, grey: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = crop_pixels(self.box, *self.frame_size)
        ox, oy = self.offset
        patch = grey[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        return np.ascontiguousarray(cv2.resize(patch, (self.size, self.size), interpolation=cv2.INTER_AREA))

    def _fix_box(self) -> None:
        self.box, self.origin = full_frame_crop(self.listener, self.faces.box(), "automatic", self.video)
        for grey in self.waiting:
            self.crops.append(self._cut(grey))
        self.waiting = []

    def feed(self, grey: np.ndarray) -> None:
        frame, self.frame = self.frame, self.frame + 1
        if self.box is None and frame < self.detect_until and frame % AUTO_DETECT_EVERY == 0:
            self.faces.add(grey)
        if frame % self.step == 0:
            if self.box is None:
                self.waiting.append(grey.copy())
            else:
                self.crops.append(self._cut(grey))
        if self.box is None and frame + 1 >= self.detect_until:
            self._fix_box()

    def finish(self, video: Path | str = "") -> Windows:
        if self.box is None:  # a video shorter than the detection period
            self._fix_box()
        notes = self.faces.notes(self.region, self.frame_size, self.origin) if self.origin != "configured" \
            else [self.region.note]
        info = {"crop": [round(float(v), 4) for v in self.box], "crop_from": self.origin,
                "seconds": round(time.monotonic() - self.started, 3), "notes": notes}
        return body_windows(self.crops.array, self.n_frames, self.p, info, video)


class BodyModality(VisionModality):
    name = "body"
    DEFAULT_PARAMS = DEFAULT_PARAMS

    def settings_params(self, settings: Settings) -> dict[str, Any]:
        """The body crop (``EMPATHY_BODY_CROP``; empty = automatic per video), recorded by training."""
        return {"body_crop": settings.body_crop}

    def inference_params(self, settings: Settings, options: PipelineOptions) -> dict[str, Any]:
        """The vision ones; a non-empty ``EMPATHY_BODY_CROP`` overrides the crop the model recorded at training."""
        params = super().inference_params(settings, options)
        return {**params, "body_crop": settings.body_crop} if settings.body_crop.strip() else params

    def frame_consumer(self, video: Path, *, subject: int, params: dict[str, Any] | None = None) -> BodyFrames:
        """The per-frame part, for a decode shared with other modalities (frames: grey, listener crop)."""
        return BodyFrames(video, subject=subject, params=params)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """(n, 16, 128, 128) windows over every 5th frame of the fixed crop, anchored every k-th kept frame.

        On its own (a body worker) the decoder converts only the kept frames, and only the crop of them:
        cheaper than :class:`BodyFrames`, which is for a decode already shared with other modalities.
        """
        p = {**DEFAULT_PARAMS, **(params or {})}
        step, size = int(p["downsample"]), int(p["size"])
        started = time.monotonic()
        box, origin, notes = body_crop(video, subject, p)
        n_frames = probe(video).n_frames
        crops = FrameRows(-(-n_frames // step), (size, size), np.uint8)
        for crop in iter_frames(video, gray=True, crop=box, size=(size, size), every=step, threads=decode_threads(p)):
            crops.append(crop)
        info = {"crop": [round(float(v), 4) for v in box], "crop_from": origin,
                "seconds": round(time.monotonic() - started, 3), "notes": notes}
        return body_windows(crops.array, n_frames, p, info, video)


MODALITY = BodyModality()
