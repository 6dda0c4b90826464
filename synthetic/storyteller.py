"""The storyteller of the OMG-Empathy layout: another real face (Grace Hopper's portrait shipped with
matplotlib), talking in step with the story's voice, on the left of a side-by-side frame.

The real recordings put storyteller and listener side by side in one 2560x720 frame, the storyteller on the
left. ``empathy synth --layout omg`` reproduces that so the listener-region handling is tested where it
matters: the storyteller's face is a different real person, larger than the listener's by default (the case
where following "the largest face" analyses the wrong person), and it moves (the jaw opens with the loudness
of the voice), so it is a live face to every detector, not a still picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from synthetic.curves import rng_for

STORYTELLER_FACE_SCALE = 1.4  # storyteller's face box / listener's face box (OMG-Empathy: the storyteller is nearer)
JAW_DROP = 0.09  # lower lip and chin move down by this fraction of the face width at full loudness
_STORYTELLER = 8  # rng stream tag


@dataclass(frozen=True)
class Portrait:
    image: np.ndarray  # RGB
    box: tuple[int, int, int, int]  # dlib face box
    landmarks: np.ndarray  # (68, 2)


@lru_cache(maxsize=1)
def portrait() -> Portrait:
    """Grace Hopper's portrait from matplotlib's sample data, with her face box and 68 landmarks (once per process)."""
    import dlib
    import face_recognition_models
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as picture:
        image = np.ascontiguousarray(np.asarray(picture.convert("RGB")))
    rects = list(dlib.get_frontal_face_detector()(image, 0))
    if not rects:
        raise RuntimeError("dlib found no face in matplotlib's grace_hopper.jpg; is dlib working?")
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())(image, rect)
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return Portrait(image=image, box=(rect.left(), rect.top(), rect.right(), rect.bottom()), landmarks=landmarks)


class StorytellerRenderer:
    """Draws the storyteller panel (``width`` x ``height``) whose face box is ``face_px`` wide."""

    def __init__(self, width: int, height: int, *, face_px: float, story: int, seed: int) -> None:
        source = portrait()
        x0, y0, x1, y1 = source.box
        box_w = float(x1 - x0)
        scale = face_px / box_w
        # Head and shoulders: the face box grown sideways and upwards, down to the bottom of the photo.
        cx0, cy0 = max(0, int(x0 - 0.75 * box_w)), max(0, int(y0 - 0.6 * box_w))
        cx1, cy1 = min(source.image.shape[1], int(x1 + 0.75 * box_w)), source.image.shape[0]
        cut = source.image[cy0:cy1, cx0:cx1]
        self.image = cv2.resize(cut, (round(cut.shape[1] * scale), round(cut.shape[0] * scale)),
                                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        h, w = self.image.shape[:2]
        points = (source.landmarks - (cx0, cy0)) * scale
        # A soft oval mask, so the photo's backdrop blends into the wall.
        mask = np.zeros((h, w), np.float32)
        cv2.ellipse(mask, (w // 2, h // 2 + h // 6), (int(0.48 * w), int(0.68 * h)), 0, 0, 360, 1.0, -1)
        self.alpha = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(2.0, 0.03 * w))[:, :, None]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._xx, self._yy = xx, yy
        lip, chin = points[57], points[8]
        sigma = 0.16 * face_px
        bump = np.exp(-0.5 * (((xx - lip[0]) / sigma) ** 2 + ((yy - (lip[1] + chin[1]) / 2) / sigma) ** 2))
        # Only below the upper lip: the jaw drops, the eyes do not.
        below = np.clip((yy - points[62, 1]) / (0.05 * face_px), 0.0, 1.0)
        self._drop = (JAW_DROP * face_px * bump * below).astype(np.float32)
        rng = rng_for(seed, _STORYTELLER, story)
        wall = rng.uniform(120, 170, 3)
        self.background = np.broadcast_to(wall.astype(np.uint8), (height, width, 3)).copy()
        self.x = (width - w) // 2
        self.y = height - h if h <= height else 0
        self.width, self.height = width, height

    def render(self, loudness: float) -> np.ndarray:
        """The panel (RGB uint8) with the jaw opened by ``loudness`` in [0, 1]."""
        loud = float(np.clip(loudness, 0.0, 1.0))
        face = cv2.remap(self.image, self._xx, self._yy - loud * self._drop, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        panel = self.background.copy()
        h, w = face.shape[:2]
        y0, x0 = max(self.y, 0), max(self.x, 0)
        h1, w1 = min(h, self.height - y0), min(w, self.width - x0)
        roi = panel[y0:y0 + h1, x0:x0 + w1].astype(np.float32)
        a = self.alpha[:h1, :w1]
        panel[y0:y0 + h1, x0:x0 + w1] = np.round(face[:h1, :w1] * a + roi * (1 - a)).astype(np.uint8)
        return panel


def loudness_per_frame(audio: np.ndarray, n_frames: int, samples_per_frame: int) -> np.ndarray:
    """RMS of each 25 fps frame's samples, scaled so the loudest frames reach 1 (the storyteller's jaw)."""
    frames = np.zeros(n_frames, np.float64)
    for i in range(n_frames):
        chunk = audio[i * samples_per_frame:(i + 1) * samples_per_frame]
        frames[i] = float(np.sqrt(np.mean(np.square(chunk)))) if chunk.size else 0.0
    top = float(np.percentile(frames, 95)) if frames.any() else 1.0
    return np.clip(frames / max(top, 1e-6), 0.0, 1.0)
