"""A real face whose expression follows valence: the astronaut photo shipped with scikit-image.

dlib locates the face and its 68 landmarks on the photo once per process; the head is cut out with a soft mask
(skull ellipse + jaw hull) into an RGBA sprite. Expression is a smooth displacement field (Gaussian bumps at the
mouth corners and brows) that is linear in valence, so one ``cv2.remap`` per frame applies expression and head
tilt together: cheap enough for a few milliseconds per frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# 68-point indices (iBUG 300-W numbering, as dlib's predictor uses).
JAW = slice(0, 17)
LEFT_BROW_CENTER, RIGHT_BROW_CENTER = 19, 24
MOUTH_LEFT, MOUTH_RIGHT = 48, 54

# Displacements at valence +1, as fractions of the face width (dlib box width); negative y = up.
MOUTH_CORNER_UP = 0.085
MOUTH_CORNER_OUT = 0.025
MOUTH_SIGMA = 0.10
BROW_UP = 0.045
BROW_SIGMA = (0.13, 0.06)


@dataclass(frozen=True)
class PhotoFace:
    """The astronaut photo, its face box (x0, y0, x1, y1) and its 68 landmarks (x, y) as dlib found them."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    landmarks: np.ndarray


@lru_cache(maxsize=1)
def photo_face() -> PhotoFace:
    """Detect the astronaut's face once per process (~1 s, mostly loading the landmark model)."""
    import dlib
    import face_recognition_models
    from skimage import data

    image = np.ascontiguousarray(data.astronaut())
    detector = dlib.get_frontal_face_detector()
    boxes = list(detector(image, 1))
    if not boxes:
        raise RuntimeError("dlib found no face in skimage.data.astronaut(); is dlib working?")
    # The photo also shows a mission patch lower down that HOG may take for a face: the head is the topmost.
    box = min(boxes, key=lambda b: b.top())
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    shape = predictor(image, box)
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    logger.info("located the face of the synthetic listener", extra={"box": [box.left(), box.top(), box.right(), box.bottom()]})
    return PhotoFace(image=image, box=(box.left(), box.top(), box.right(), box.bottom()), landmarks=landmarks)


def _head_mask(shape: tuple[int, int], face: PhotoFace) -> np.ndarray:
    """Soft alpha (float32 0..1) covering hair, face and chin, but not the space suit."""
    x0, y0, x1, y1 = face.box
    width = x1 - x0
    cx = (x0 + x1) / 2.0
    cy = (y0 + y1) / 2.0
    mask = np.zeros(shape, dtype=np.uint8)
    # Skull and hair: an ellipse above the face centre.
    cv2.ellipse(
        mask,
        (round(cx), round(cy - 0.33 * width)),
        (round(0.86 * width), round(0.93 * width)),
        0.0, 0.0, 360.0, 255, -1,
    )
    # Keep hair and skin, drop the grey studio backdrop and the dark suit inside the ellipse: both are
    # unsaturated, hair and skin are not.
    saturation = cv2.cvtColor(face.image, cv2.COLOR_RGB2HSV)[:, :, 1]
    mask[saturation < 60] = 0
    # Face down to the chin: the hull of the jaw line and the brows, whatever its colours.
    outline = np.vstack([face.landmarks[JAW], face.landmarks[17:27]])
    cv2.fillConvexPoly(mask, cv2.convexHull(outline.astype(np.int32)), 255)
    # ...except the dark suit collar the hull grazes beside the chin (below the lower lip only: eyes stay).
    below_lip = int(face.landmarks[57, 1]) + 3
    value = cv2.cvtColor(face.image, cv2.COLOR_RGB2HSV)[:, :, 2]
    mask[below_lip:][value[below_lip:] < 90] = 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    # The largest blob is the head; stray saturated specks of the backdrop are not.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        mask = np.where(labels == biggest, 255, 0).astype(np.uint8)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=1.5)
    return alpha


def _bump(xx: np.ndarray, yy: np.ndarray, center: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((xx - center[0]) / sx) ** 2 + ((yy - center[1]) / sy) ** 2)).astype(np.float32)


class HeadSprite:
    """The head at one pixel scale, ready to be rendered with any valence and tilt.

    ``face_px`` is the width the dlib face box should have in the output frames.
    """

    def __init__(self, face_px: float) -> None:
        face = photo_face()
        x0, y0, x1, y1 = face.box
        box_w = float(x1 - x0)
        scale = face_px / box_w
        alpha = _head_mask(face.image.shape[:2], face)
        ys, xs = np.nonzero(alpha > 0.01)
        pad = int(0.05 * box_w)
        h_img, w_img = alpha.shape
        sx0, sx1 = max(0, xs.min() - pad), min(w_img, xs.max() + pad + 1)
        sy0, sy1 = max(0, ys.min() - pad), min(h_img, ys.max() + pad + 1)
        rgba = np.dstack([face.image, np.round(alpha * 255).astype(np.uint8)])[sy0:sy1, sx0:sx1]
        out_w = round((sx1 - sx0) * scale)
        out_h = round((sy1 - sy0) * scale)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        self.rgba = cv2.resize(rgba, (out_w, out_h), interpolation=interp)
        # Pad so that tilting never cuts the head off at the sprite border.
        margin = round(0.08 * max(out_w, out_h))
        self.rgba = cv2.copyMakeBorder(self.rgba, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0)

        def to_sprite(points: np.ndarray) -> np.ndarray:
            return (np.asarray(points, np.float32) - (sx0, sy0)) * scale + margin

        self.landmarks = to_sprite(face.landmarks)
        self.anchor = to_sprite(np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]))
        self.face_px = face_px
        self.skin_rgb = tuple(int(c) for c in np.median(self._cheek_pixels(face), axis=0))

        h, w = self.rgba.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._dx = (xx - self.anchor[0]).astype(np.float32)
        self._dy = (yy - self.anchor[1]).astype(np.float32)
        fw = float(face_px)
        field_x = np.zeros((h, w), np.float32)
        field_y = np.zeros((h, w), np.float32)
        for index, side in ((MOUTH_LEFT, -1.0), (MOUTH_RIGHT, 1.0)):
            bump = _bump(xx, yy, self.landmarks[index], MOUTH_SIGMA * fw, MOUTH_SIGMA * fw)
            field_x += side * MOUTH_CORNER_OUT * fw * bump
            field_y -= MOUTH_CORNER_UP * fw * bump
        for index in (LEFT_BROW_CENTER, RIGHT_BROW_CENTER):
            field_y -= BROW_UP * fw * _bump(xx, yy, self.landmarks[index], BROW_SIGMA[0] * fw, BROW_SIGMA[1] * fw)
        # remap pulls pixels: moving content by +D means sampling at x - D.
        self._field_x = field_x
        self._field_y = field_y

    @staticmethod
    def _cheek_pixels(face: PhotoFace) -> np.ndarray:
        lm = face.landmarks
        cheek = ((lm[2] + lm[31]) / 2.0).astype(int)
        r = max(2, int(0.04 * (face.box[2] - face.box[0])))
        patch = face.image[cheek[1] - r : cheek[1] + r, cheek[0] - r : cheek[0] + r]
        return patch.reshape(-1, 3)

    def render(self, valence: float, tilt_deg: float = 0.0) -> np.ndarray:
        """RGBA head with the expression of ``valence`` (-1..1), rolled by ``tilt_deg`` about the face centre."""
        valence = float(valence)
        theta = math.radians(float(tilt_deg))
        c, s = math.cos(theta), math.sin(theta)
        ax, ay = float(self.anchor[0]), float(self.anchor[1])
        map_x = ax + c * self._dx + s * self._dy - valence * self._field_x
        map_y = ay - s * self._dx + c * self._dy - valence * self._field_y
        return cv2.remap(self.rgba, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@lru_cache(maxsize=4)
def head_sprite(face_px: int) -> HeadSprite:
    """One sprite per output scale and process (building it takes ~10 ms once the face is known)."""
    return HeadSprite(float(face_px))
