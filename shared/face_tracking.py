"""Face detection, box tracking and 68-point landmarks for the face and landmarks modalities.

dlib's HOG detector costs ~20 ms on a 640x360 frame while the 68-point shape predictor costs ~1 ms, so the
tracker runs HOG only every ``detect_every`` frames and carries the box in between. A first detection scans
the whole listener region (the frames given are already cut to it) at its own resolution, shrunk only as far
as a face of ``min_face_px`` stays detectable (:func:`detection_scale`: by default not at all, so faces down to
~55 px are found), or enlarged when the region is small (:func:`region_scale`: under 320 px tall, up to 2x,
so a 44 px face in a 176x144 video is found); re-detections of a tracked face scan only a region twice the box's size, scaled so the face
is ~100 px wide (~4 ms), and fall back to the whole region when the face is not there. With several faces in
the region one identity is followed throughout and :meth:`FaceTracker.ambiguity` says so. In landmarks mode the box follows the fitted landmarks from frame to frame and a detection runs
early when the fit degrades (see :class:`FaceTracker`: the box moved, the picture changed, or a second fit
from the fitted box disagrees with the first), so a frame costs little more than two predictor fits.

Frames without a face have one defined behaviour, shared by both modalities: the last box is carried for at
most ``max_gap`` frames after the face was last *detected*; beyond that frames are reported as ``missing``
with no box, so the modality can mark them and fusion can weigh them out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import cv2
import dlib
import face_recognition_models
import numpy as np

from shared.quality import AMBIGUITY_PREFIX

logger = logging.getLogger(__name__)

N_LANDMARKS = 68

PATCH = 24  # side of the grey thumbnail that the appearance check compares
ROI_FACE_PX = 100  # a re-detection around the tracked box scales the region so the face is this wide
MAX_JUMP = 2.0  # in a region with several faces, a lost face is re-acquired only within this many face sizes
TIE_AREA = 0.8  # at the first detection, faces at least this share of the largest one's area tie with it

# Status of one frame, in decreasing order of confidence.
DETECTED = "detected"  # HOG found the face on this very frame
TRACKED = "tracked"  # box carried (face mode) or followed by the landmarks (landmarks mode) since a detection
CARRIED = "carried"  # the last detection attempt failed: last box carried, at most max_gap frames
MISSING = "missing"  # no face for longer than max_gap frames: no box, no features


@dataclass(frozen=True)
class TrackerConfig:
    """Knobs of :class:`FaceTracker`; the modalities record them in the model metadata as preprocessing params."""

    detect_every: int = 10  # frames between HOG detections while a face is tracked (the paper: 10)
    detect_width: int = 640  # a whole-region HOG pass may shrink the frame to this width, if min_face_px allows
    min_face_px: int = 80  # smallest face (box height, pixels of the frame) a whole-region detection must find
    upsample: int = 0  # dlib pyramid up-sampling: faces under ~80 px at detect_width need 1
    max_gap: int = 25  # frames the last box is carried after the face was last confirmed (1 s)
    smoothing: float = 0.5  # weight of a new detection in the box (1 = no smoothing)
    min_fit_iou: float = 0.5  # landmarks mode: IoU(box from the fit, box at the last detection) under this = drifted
    min_similarity: float = 0.5  # landmarks mode: correlation of the box's picture with the one at the last detection
    max_refit_shift: float = 0.05  # landmarks mode: a second fit from the fitted box moves points this much (eye dist)
    roi_margin: float = 0.5  # re-detections search the tracked box grown by this many box sizes on each side

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.max_gap < self.detect_every:
            raise ValueError(
                f"max_gap ({self.max_gap}) must be >= detect_every ({self.detect_every}): "
                "otherwise frames between two successful detections would be reported missing"
            )
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")

    @classmethod
    def from_params(cls, params: dict) -> TrackerConfig:
        """The config from a modality's preprocessing params (unknown keys ignored, defaults for absent ones)."""
        names = cls.__dataclass_fields__
        return cls(**{key: type(getattr(cls(), key))(value) for key, value in params.items() if key in names})


@dataclass(frozen=True)
class FaceObservation:
    """What the tracker knows about one frame. ``box`` is (x0, y0, x1, y1) in pixels of the frame given."""

    status: str
    box: np.ndarray | None
    landmarks: np.ndarray | None = None  # (68, 2) float32 (x, y) pixels; landmarks mode only

    @property
    def missing(self) -> bool:
        return self.box is None


# dlib's HOG detector keeps the image pyramid of its current call inside the object, so one instance must
# never run in two threads at once (dlib: "concurrent access ... is not safe"). ``empathy analyze`` tracks
# faces in several threads: each call borrows a detector from this free list (built once, ~0.3 s, then
# reused), so no two threads ever share one. The shape predictor is read-only and safe to share.
_free_detectors: list[dlib.fhog_object_detector] = []
_detectors_lock = threading.Lock()


@contextmanager
def _detector() -> Iterator[dlib.fhog_object_detector]:
    """A HOG detector for this call only (borrowed from the free list, created when none is free)."""
    with _detectors_lock:
        detector = _free_detectors.pop() if _free_detectors else None
    if detector is None:
        detector = dlib.get_frontal_face_detector()
    try:
        yield detector
    finally:
        with _detectors_lock:
            _free_detectors.append(detector)


@lru_cache(maxsize=1)
def _predictor() -> dlib.shape_predictor:
    """The 68-point model shipped by face-recognition-models (loaded once per process, ~0.5 s)."""
    return dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


HOG_FACE_PX = 80  # dlib's frontal detector scans an 80x80 window: smaller faces need up-sampling


def detection_scale(width: int, *, detect_width: int = 640, min_face_px: int = HOG_FACE_PX) -> float:
    """How much a whole-region HOG pass may shrink a frame ``width`` wide (1 = not at all).

    Shrinking to ``detect_width`` saves time, but only while a face of ``min_face_px`` stays at least
    :data:`HOG_FACE_PX` tall: the listener's face in a 2560x720 recording is ~170 px, and shrinking the
    whole frame (or even its listener region) to 640 px wide put it under the detector's window.
    """
    return min(1.0, max(detect_width / max(width, 1), HOG_FACE_PX / max(min_face_px, 1)))


SMALL_REGION_FACES = 4.0  # a region under this many HOG windows tall holds faces under the window: enlarge it
MAX_UPSCALE = 2.0  # enlarge a small region at most this much (HOG then finds faces from ~40 px)


def region_scale(width: int, height: int, *, detect_width: int = 640, min_face_px: int = HOG_FACE_PX) -> float:
    """The scale a whole-region HOG pass runs at: :func:`detection_scale`, or > 1 for a small region.

    A listener region under :data:`SMALL_REGION_FACES` x 80 px tall (a 176x144 video: 144 < 320)
    can only hold faces of about half its height or less, i.e. under HOG's 80 px window: dlib found a 44-53 px
    face on 0 of 100 frames there. Such a region is enlarged so it is that tall (at most :data:`MAX_UPSCALE`
    times), which finds faces down to ~40 px; a small region is cheap to scan even enlarged.
    """
    if height < SMALL_REGION_FACES * HOG_FACE_PX and min_face_px <= HOG_FACE_PX:
        return float(min(MAX_UPSCALE, SMALL_REGION_FACES * HOG_FACE_PX / max(height, 1)))
    return detection_scale(width, detect_width=detect_width, min_face_px=min_face_px)


def detect_faces(grey: np.ndarray, *, detect_width: int = 640, upsample: int = 0,
                 min_face_px: int = HOG_FACE_PX) -> np.ndarray:
    """HOG face boxes (n, 4) float (x0, y0, x1, y1) in pixels of ``grey``, largest first.

    ``grey`` is the listener region at its own resolution; it is shrunk only as far as
    :func:`detection_scale` allows, so faces of ``min_face_px`` are still found, and a small region is
    enlarged (:func:`region_scale`).
    """
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"detect_faces needs a 2-D uint8 grey frame, got {grey.dtype} {grey.shape}")
    scale = region_scale(grey.shape[1], grey.shape[0], detect_width=detect_width, min_face_px=min_face_px)
    # dlib reads the buffer as if C-contiguous: a view (a region cut out of a frame) must be copied first
    small = np.ascontiguousarray(grey) if scale == 1.0 else cv2.resize(
        grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    with _detector() as detector:
        rects, scores, _ = detector.run(small, upsample)
    boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    boxes /= scale
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # largest first; among boxes of one size (HOG's boxes come in a few sizes), the most confident first
    return boxes[np.lexsort((-np.asarray(scores, dtype=np.float64), -areas))]


def detect_faces_near(grey: np.ndarray, box: np.ndarray, *, margin: float = 1.0) -> np.ndarray:
    """HOG boxes (n, 4) in frame pixels, searched only around ``box`` (grown by ``margin`` box sizes a side).

    A tracked face is where it was a few frames ago and about as large: scanning a region ~2x its size,
    scaled so the face is ~ROI_FACE_PX wide (HOG's sweet spot), costs a fraction of a full-frame pass.
    """
    height, width = grey.shape
    grown = box + np.array([-margin, -margin, margin, margin]) * _sizes(box)
    x0, y0 = max(0, int(grown[0])), max(0, int(grown[1]))
    x1, y1 = min(width, int(np.ceil(grown[2]))), min(height, int(np.ceil(grown[3])))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return np.zeros((0, 4))
    scale = float(np.clip(ROI_FACE_PX / max(box[2] - box[0], 1.0), 0.25, 2.0))
    region = cv2.resize(grey[y0:y1, x0:x1], None, fx=scale, fy=scale,
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    with _detector() as detector:
        rects = detector(region, 0)
    if not rects:
        return np.zeros((0, 4))
    boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], dtype=np.float64)
    return boxes / scale + np.array([x0, y0, x0, y0])


def fit_landmarks(grey: np.ndarray, box: np.ndarray) -> np.ndarray:
    """68 (x, y) points (float32) fitted by dlib's shape predictor on the full-resolution frame within ``box``."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = _predictor()(grey, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def first_listener(boxes: np.ndarray, shape: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    """The face taken for the listener at the first detection, and the rule that chose it (for the notes).

    The largest face: ``boxes`` come from :func:`detect_faces`, largest first and, among boxes of one size,
    the detector's most confident first. HOG's boxes come in a few sizes only, so faces of about the largest
    one's size (areas within :data:`TIE_AREA` of it) are a tie, and the note says the tie was broken by the
    detector's confidence rather than calling the chosen face "the largest". '' when there was one face.
    ``shape`` (the region's (height, width)) is kept for callers; the rule does not need it.
    """
    if len(boxes) < 2:
        return boxes[0], ""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    tied = np.flatnonzero(areas >= TIE_AREA * areas.max())
    if len(tied) < 2:
        return boxes[0], f"the largest of {len(boxes)} faces at the first detection"
    return boxes[int(tied[0])], (f"{len(tied)} faces of about the same size at the first detection (areas within "
                                 f"{1 - TIE_AREA:.0%} of each other): the one the detector was surest of")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _extent(points: np.ndarray) -> np.ndarray:
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()], dtype=np.float64)


def _sizes(box: np.ndarray) -> np.ndarray:
    w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    return np.array([w, h, w, h])


def crop_box(grey: np.ndarray, box: np.ndarray, size: int, *, margin: float = 0.0) -> np.ndarray:
    """``box`` (grown by ``margin`` of its size on each side) resized to ``size`` x ``size`` uint8.

    Parts of the box outside the frame are filled by replicating the border, so a face at the edge of
    the picture still gives a crop of the right geometry instead of a stretched one.
    """
    grown = box + np.array([-margin, -margin, margin, margin]) * _sizes(box)
    x0, y0, x1, y1 = (int(round(v)) for v in grown)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"box {box} is too small to crop")
    height, width = grey.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"box {box} lies outside the {width}x{height} frame")
    patch = grey[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        patch = cv2.copyMakeBorder(patch, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


class FaceTracker:
    """Streaming tracker: call :meth:`update` once per frame, in order (one tracker per video).

    Face mode: HOG every ``detect_every`` frames; the box is exponentially smoothed across detections and
    carried in between. Landmarks mode (``landmarks=True``) additionally fits the 68 points on every frame
    with a box; the box then follows the fit (through the detector-box/landmark-extent relation measured at
    the last detection). The fit counts as degraded, and HOG runs on that very frame, when the followed box
    has drifted from the last detection (IoU < ``min_fit_iou``: the face moved a lot, or the fit wandered
    off) or when the picture in the box no longer correlates with the face at the last detection
    (< ``min_similarity``: the face left, or something covers it).
    """

    def __init__(self, config: TrackerConfig | None = None, *, landmarks: bool = False) -> None:
        self.config = config or TrackerConfig()
        self.landmarks = landmarks
        self.frame = -1
        self.detections = 0  # HOG runs, for cost accounting in logs and tests
        self._box: np.ndarray | None = None
        self._last_seen = 0  # frame of the last successful detection
        self._searching = False  # the last detection failed while a box was carried
        self._next_detect = 0
        self._relation: np.ndarray | None = None  # (detector box - landmark extent) / extent size
        self._anchor: np.ndarray | None = None  # box at the last detection
        self._reference: np.ndarray | None = None  # normalised thumbnail of the face at the last detection
        self._good_points: np.ndarray | None = None  # the last fit that was not degraded
        self._identity: np.ndarray | None = None  # box of the followed face when it was last detected
        self.region_detections = 0  # whole-region HOG passes that found a face
        self.crowded = 0  # ... of which found more than one face (the listener was ambiguous there)
        self.max_faces = 0
        self.first_rule = ""  # how the followed face was chosen at the first detection (for the notes)
        self.last_refit_shift = 0.0  # landmarks mode: how far a second fit moved the points (eye distances)
        self.region_size: tuple[int, int] | None = None  # (width, height) of the frames searched
        self._frame_shape: tuple[int, int] | None = None

    def update(self, grey: np.ndarray) -> FaceObservation:
        """Observe the next frame (2-D uint8, full resolution) and say where the face is.

        Only a detection confirms a face: a landmark fit always finds *some* face-like shape in its box, so
        it can move the box but never extend the time a box may be carried.
        """
        self.frame += 1
        self._frame_shape = grey.shape[:2]
        self.region_size = (int(grey.shape[1]), int(grey.shape[0]))
        attempted = detected = False
        if self.frame >= self._next_detect:
            attempted, detected = True, self._detect(grey)
        if self._box is None:
            return FaceObservation(MISSING, None)
        points = None
        if self.landmarks:
            points, consistent = self._fit(grey, just_detected=detected)
            if not consistent and not attempted:
                # The fit degraded: re-detect now rather than at the next scheduled detection.
                detected = self._detect(grey)
                if self._box is None:
                    return FaceObservation(MISSING, None)
                if detected:
                    points, consistent = self._fit(grey, just_detected=True)
            if consistent:
                self._good_points = points
            else:  # while the box is only carried, a degraded fit is noise: repeat the last trusted points
                points = self._good_points
        status = DETECTED if detected else CARRIED if self._searching else TRACKED
        return FaceObservation(status, self._box.copy(), points)

    def _detect(self, grey: np.ndarray) -> bool:
        """Run HOG and update box and schedule; False when no face is found (the box may then be dropped)."""
        cfg = self.config
        self.detections += 1
        boxes = np.zeros((0, 4))
        if self._box is not None:  # a tracked face: look around it first (cheap), the whole frame if not there
            boxes = detect_faces_near(grey, self._box, margin=cfg.roi_margin)
        if not len(boxes):
            boxes = detect_faces(grey, detect_width=cfg.detect_width, upsample=cfg.upsample,
                                 min_face_px=cfg.min_face_px)
            if len(boxes):
                self.region_detections += 1
                self.crowded += int(len(boxes) > 1)
                self.max_faces = max(self.max_faces, len(boxes))
        new = self._closest(boxes) if len(boxes) else None
        if new is not None:
            self._identity = new.copy()
            if self._box is not None and iou(new, self._box) > 0.3:
                new = cfg.smoothing * new + (1.0 - cfg.smoothing) * self._box
            self._box = new
            self._last_seen = self.frame
            self._searching = False
            self._next_detect = self.frame + cfg.detect_every
            return True
        if self._box is not None and self.frame - self._last_seen <= cfg.max_gap:
            self._searching = True
            self._next_detect = self.frame + 1  # a face lost for a moment: retry on the next frame
            return False
        if self._box is not None:
            logger.debug("face lost", extra={"frame": self.frame, "last_seen": self._last_seen})
        self._box = None
        self._relation = None
        self._good_points = None
        self._searching = False
        self._next_detect = self.frame + cfg.detect_every
        return False

    def _closest(self, boxes: np.ndarray) -> np.ndarray | None:
        """The detection that continues the track: one identity over the whole video.

        The first detection takes the largest face; afterwards the box overlapping the current one most, and
        once the face was lost, the one nearest (centre distance over size) to where it was last detected, so
        a second face in the region never takes over the track just because it is larger.
        """
        reference = self._box if self._box is not None else self._identity
        if reference is None:
            return self._first_choice(boxes)
        overlaps = [iou(b, reference) for b in boxes]
        best = int(np.argmax(overlaps))
        if overlaps[best] > 0:
            return boxes[best]
        centre = (reference[:2] + reference[2:]) / 2.0
        size = max(reference[2] - reference[0], 1.0)
        distances = [np.linalg.norm((b[:2] + b[2:]) / 2.0 - centre) / size for b in boxes]
        nearest = int(np.argmin(distances))
        if self.crowded and distances[nearest] > MAX_JUMP:
            return None  # another person while the followed face is hidden: keep waiting for the listener
        return boxes[nearest]

    def _first_choice(self, boxes: np.ndarray) -> np.ndarray:
        """The listener at the first detection (:func:`first_listener`); :attr:`first_rule` says which rule chose."""
        chosen, self.first_rule = first_listener(boxes, self._frame_shape)
        return chosen

    def ambiguity(self) -> str:
        """A sentence for the job's notes when the region held several faces; '' when it never did."""
        if not self.crowded:
            return ""
        rule = self.first_rule or "the one found first"
        return (f"{AMBIGUITY_PREFIX} {self.max_faces} faces in the listener region on {self.crowded} of "
                f"{self.region_detections} region-wide detections; one face was followed throughout ({rule}): "
                "set the listener region to choose")

    def _fit(self, grey: np.ndarray, *, just_detected: bool) -> tuple[np.ndarray, bool]:
        """Fit the landmarks in the box, move the box with them; say whether the fit is still trustworthy.

        On a detection frame the fit starts from the detector's own box (not the box smoothed with the
        followed one: a fit on a drifted box drifts, 0.12 of the eye distance on a frame where a detection
        ran). Between detections the fit is checked three ways: the box it implies must still overlap the
        last detection (``min_fit_iou``: the box moved), show the same picture (``min_similarity``), and a
        second fit from that box must land where the first did (within ``max_refit_shift`` of the eye
        distance: the fit quality dropped). Any failure re-detects at once (:meth:`update`).
        """
        assert self._box is not None
        if just_detected and self._identity is not None:
            self._box = self._identity.copy()  # the detection itself, unsmoothed: the fit's best start
        points = fit_landmarks(grey, self._box)
        extent = _extent(points)
        if just_detected or self._relation is None:
            self._relation = (self._box - extent) / _sizes(extent)
            self._anchor = self._box.copy()
            self._reference = _thumbnail(grey, self._box)
            return points, True
        followed = extent + self._relation * _sizes(extent)
        refit = fit_landmarks(grey, followed)
        eyes = max(float(np.linalg.norm(refit[36] - refit[45])), 1.0)
        self.last_refit_shift = float(np.linalg.norm(refit - points, axis=1).mean()) / eyes
        consistent = (iou(followed, self._anchor) >= self.config.min_fit_iou
                      and self.last_refit_shift <= self.config.max_refit_shift
                      and float(np.dot(_thumbnail(grey, followed), self._reference)) >= self.config.min_similarity)
        if consistent:
            self._box = followed
            return refit, True
        return points, False


def _thumbnail(grey: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's picture as a zero-mean, unit-norm vector: dot products of two are their correlation."""
    patch = crop_box(grey, box, PATCH).astype(np.float32).reshape(-1)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-6 else patch
