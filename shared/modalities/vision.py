"""What the vision modalities (face, landmarks, body) share: defaults, the shared decode, anchors -> frames.

:class:`VisionModality` is the base of all three: preprocessing defaults from its ``DEFAULT_PARAMS``, a
``prepare`` that decodes the listener's grey frames and feeds them to the modality's own
:meth:`~VisionModality.frame_consumer` (the part ``empathy analyze`` feeds from one decode shared by all
three, :mod:`shared.modalities.frame_stream`), and predictions put back on the 25 fps grid by
:func:`shared.windows.anchors_to_grid`. The body overrides ``prepare`` with a cheaper decode of its own.

:class:`TrackedFrames` is the per-frame work of the two modalities that follow the listener's face
(face and landmarks, both :class:`TrackedModality`): the face tracker, one stored feature row per frame, and the windows anchored on the
frames where the face was seen, z-normalised per video.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from shared.crops import AUTO, ListenerRegion, region_for_video
from shared.face_tracking import FaceObservation, FaceTracker, TrackerConfig
from shared.media import VideoInfo, probe
from shared.modalities.base import Modality, Windows
from shared.modalities.frame_stream import FrameConsumer, decode_threads, listener_frames, prefetched
from shared.modalities.frame_windows import (
    LazyWindows,
    anchors,
    hold_last,
    predict_every,
    video_zscore,
    window_index,
)
from shared.windows import anchors_to_grid

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.values import PipelineOptions

logger = logging.getLogger(__name__)

TRACKER_PARAMS: dict[str, Any] = {name: getattr(TrackerConfig(), name) for name in TrackerConfig.__dataclass_fields__}


class VisionModality(Modality):
    """A modality reading the listener's grey frames; its windows predict their anchor (label) frames."""

    DEFAULT_PARAMS: ClassVar[dict[str, Any]]

    def default_params(self) -> dict[str, Any]:
        """Preprocessing defaults; training records them (with any overrides) in the model's metadata."""
        return dict(self.DEFAULT_PARAMS)

    def runtime_params(self, settings: Settings) -> dict[str, Any]:
        """FFmpeg's decoding threads (``EMPATHY_DECODE_THREADS``; :func:`decode_threads` reads it back)."""
        return {"decode_threads": int(settings.decode_threads)}

    def inference_params(self, settings: Settings, options: PipelineOptions) -> dict[str, Any]:
        """Windows anchored on every k-th frame (``EMPATHY_PREDICT_EVERY``) and the job's listener region
        (:mod:`shared.crops`; without one ``EMPATHY_LISTENER_CROP``; ``auto`` lets the model's training layout
        or the frame size decide).

        ``predict_every`` is never part of a model's metadata: training uses every window, and only inference
        thins them out (the outputs are low-passed far below the anchor spacing; see
        ``tests/integration/test_performance_equivalence.py`` for how little the fused curve moves).
        """
        return {"predict_every": int(settings.predict_every),
                "listener": options.listener or settings.listener_crop or AUTO}

    @abstractmethod
    def frame_consumer(self, video: Path, *, subject: int, params: dict[str, Any] | None = None) -> FrameConsumer:
        """The per-frame part, for a decode shared with other modalities (frames: grey, listener crop)."""

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """Decode the listener region's grey frames and feed them to this modality's frame consumer."""
        frames = self.frame_consumer(video, subject=subject, params=params)
        decoded = prefetched(listener_frames(video, frames.region.box, decode_threads(params)))
        with closing(decoded):  # an error here stops the decoder at once
            for grey in decoded:
                frames.feed(grey)
        return frames.finish(video)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Window predictions at their label frames -> the 25 fps grid (:func:`shared.windows.anchors_to_grid`)."""
        return anchors_to_grid(predictions, windows.label_frames, windows.n_frames, windows.missing)


class TrackedFrames(ABC):
    """Per-frame work of a modality that follows the listener's face: track, keep one row a frame, window.

    Subclasses say what they keep of a frame (:meth:`keep`: a crop, 136 landmark coordinates), which stored
    rows are present (:meth:`rows`) and what the model's inputs are (:meth:`inputs`). Frames where the tracker
    has no face are ``missing``: they get no window of their own and are NaN on the frame grid; windows that
    reach back over a few missing frames repeat the last row seen. A window is labelled with its last frame;
    the start of the video is padded with the first row, so every visible frame can be an anchor.
    """

    name: ClassVar[str]
    per_feature: ClassVar[bool]  # z-normalise each feature column on its own (landmarks) or all at once (crops)

    def __init__(self, info: VideoInfo, *, subject: int, params: dict[str, Any], landmarks: bool = False) -> None:
        self.p = params
        self.region: ListenerRegion = region_for_video(self.p, subject, info.width, info.height)
        self.frame_size = (info.width, info.height)
        self.subject = subject
        self.tracker = FaceTracker(TrackerConfig.from_params(self.p), landmarks=landmarks)
        self.started = time.monotonic()

    @abstractmethod
    def keep(self, seen: FaceObservation, grey: np.ndarray) -> None:
        """Store this frame's row (or skip it when the face was not seen)."""

    @abstractmethod
    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored rows (one a frame) and which frames are missing."""

    @abstractmethod
    def inputs(self, windows: LazyWindows, n_windows: int) -> dict[str, Any]:
        """The model's inputs for these windows."""

    def feed(self, grey: np.ndarray) -> None:
        self.keep(self.tracker.update(grey), grey)

    def finish(self, video: Path | str = "") -> Windows:
        """The windows, anchored every ``predict_every``-th visible frame, z-normalised over the video."""
        length = int(self.p["window"])
        features, missing = self.rows()
        ends = anchors(~missing, predict_every(self.p))
        if ends.size:
            mean, std = video_zscore(features, ~missing, per_feature=self.per_feature)
            index = window_index(ends, length, hold_last(~missing))
        else:  # no face anywhere: no windows, every frame missing
            mean, std, index = 0.0, 1.0, np.zeros((0, length), dtype=np.int64)
        info = {"detections": self.tracker.detections, "missing_frames": int(missing.sum()),
                "seconds": round(time.monotonic() - self.started, 3), **self.tracking_notes()}
        logger.info("vision windows ready", extra={"modality": self.name, "video": str(video),
                                                    "windows": len(ends), **info})
        return Windows(inputs=self.inputs(LazyWindows(features, index, mean=mean, std=std), len(ends)),
                       label_frames=ends, n_frames=len(features), missing=missing, info=info)

    def tracking_notes(self) -> dict[str, Any]:
        """What the job is told about the listener: the region searched, ambiguity, no face at all.

        ``notes`` go into the job's notes (the region, and when several faces were in it, that the listener
        was ambiguous); ``unavailable`` is the message when no face was ever found, naming the region searched.
        """
        notes = [self.region.note]
        ambiguous = self.tracker.ambiguity()
        if ambiguous:
            notes.append(ambiguous)
        info: dict[str, Any] = {"listener_region": list(self.region.box) if self.region.box else None,
                                "notes": notes, "faces_in_region": self.tracker.max_faces}
        if self.tracker.region_detections == 0:
            info["unavailable"] = (f"{self.name}: nothing usable in this video: no face found in the listener "
                                   f"region ({self.region.describe(*self.frame_size)}); set the listener region "
                                   "if the listener is elsewhere")
        return info


class TrackedModality(VisionModality):
    """A vision modality whose per-frame part is a :class:`TrackedFrames` (face, landmarks)."""

    FRAMES: ClassVar[type[TrackedFrames]]

    def frame_consumer(self, video: Path, *, subject: int, params: dict[str, Any] | None = None) -> TrackedFrames:
        return self.FRAMES(probe(video), subject=subject, params=params)
