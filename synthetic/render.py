"""Frames of the listener: background, drawn body and the warped photo head, composed per frame.

Everything that does not depend on the frame (background, noise bank, head sprite, colours) is prepared once
per clip, so a 640x360 frame costs a few milliseconds.
"""

from __future__ import annotations

import cv2
import numpy as np

from synthetic.body import Idle, draw_body, pose_for
from synthetic.curves import FPS, rng_for
from synthetic.face import head_sprite

# Face box width in pixels at 360 lines: large enough for dlib's HOG detector (80 px window) at 640x360.
FACE_PX_AT_360 = 110
NOISE_SIGMA = 2.5
NOISE_BANK = 8
_SHIRTS = ((38, 70, 140), (120, 40, 50), (40, 110, 70), (90, 60, 120), (150, 110, 40), (60, 60, 70))
_RENDER = 5  # rng stream tag


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A softly lit wall: vertical gradient plus low-frequency texture."""
    top = rng.uniform(150, 200, 3)
    bottom = top * rng.uniform(0.6, 0.8)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    wall = top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp
    coarse = rng.normal(0.0, 10.0, (max(2, height // 40), max(2, width // 40), 1)).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[:, :, None]
    image = np.broadcast_to(wall, (height, width, 3)) + texture
    return np.clip(image, 0, 255).astype(np.uint8)


class FrameRenderer:
    """Renders the frames of one subject's clip; deterministic for (subject, story, seed)."""

    def __init__(self, width: int, height: int, *, subject: int, story: int, seed: int) -> None:
        if width < 160 or height < 120:
            raise ValueError(f"frame size {width}x{height} is too small for a detectable face (min 160x120)")
        self.width = width
        self.height = height
        rng = rng_for(seed, _RENDER, subject, story)
        self.background = _background(width, height, rng_for(seed, _RENDER, subject))
        # Zero-mean noise as (add, subtract) uint8 pairs so saturating cv2.add/subtract apply it quickly.
        self._noise = []
        for _ in range(NOISE_BANK):
            noise = np.clip(np.round(rng.normal(0.0, NOISE_SIGMA, (height, width, 3))), -20, 20).astype(np.int16)
            self._noise.append((np.clip(noise, 0, None).astype(np.uint8), np.clip(-noise, 0, None).astype(np.uint8)))
        self.sprite = head_sprite(round(FACE_PX_AT_360 * height / 360.0))
        self.shirt = _SHIRTS[(subject - 1) % len(_SHIRTS)]
        self.idle = Idle(*rng.uniform(0.0, 2.0 * np.pi, 3))

    def render(self, valence: float, index: int) -> np.ndarray:
        """RGB uint8 frame number ``index`` showing ``valence``."""
        frame = self.background.copy()
        pose = pose_for(valence, index / FPS, self.width, self.height, self.idle)
        draw_body(frame, pose, shirt=self.shirt, skin=self.sprite.skin_rgb)
        head = self.sprite.render(valence, pose.tilt_deg)
        x0 = round(pose.head[0] - float(self.sprite.anchor[0]))
        y0 = round(pose.head[1] - float(self.sprite.anchor[1]))
        self._paste(frame, head, x0, y0)
        add, sub = self._noise[index % NOISE_BANK]
        cv2.add(frame, add, dst=frame)
        cv2.subtract(frame, sub, dst=frame)
        return frame

    @staticmethod
    def _paste(frame: np.ndarray, rgba: np.ndarray, x0: int, y0: int) -> None:
        """Alpha-blend ``rgba`` into ``frame`` with its top-left at (x0, y0), clipped to the frame."""
        h, w = rgba.shape[:2]
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(frame.shape[1], x0 + w), min(frame.shape[0], y0 + h)
        if fx0 >= fx1 or fy0 >= fy1:
            return
        src = rgba[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        alpha = src[:, :, 3:4].astype(np.uint16)
        roi = frame[fy0:fy1, fx0:fx1]
        blended = (src[:, :, :3].astype(np.uint16) * alpha + roi.astype(np.uint16) * (255 - alpha) + 127) // 255
        roi[...] = blended.astype(np.uint8)
