"""The toy modality's preprocessing: the mean brightness of the listener region, frame by frame.

Each frame gets one window: the brightness of it and of the ``context - 1`` frames before it (the first frame
repeated at the start), and the window predicts that frame's valence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.crops import region_for_video
from shared.media import iter_frames, probe
from shared.modalities.base import Modality, Windows


class BrightnessModality(Modality):
    """One window per frame: its brightness and that of the frames just before it."""

    name = "brightness"

    def default_params(self) -> dict[str, Any]:
        """Frames of context per window, and the size frames are shrunk to before averaging (cheap decode)."""
        return {"context": 5, "width": 32, "height": 18}

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        p = {**self.default_params(), **(params or {})}
        info = probe(video)
        region = region_for_video(p, subject, info.width, info.height)
        frames = iter_frames(video, gray=True, size=(int(p["width"]), int(p["height"])), crop=region.box)
        brightness = np.array([frame.mean() / 255.0 for frame in frames], dtype=np.float32)
        n, context = brightness.size, int(p["context"])
        if n == 0:
            return Windows(inputs={"brightness": np.zeros((0, context, 1), np.float32)},
                           label_frames=np.zeros(0, np.int64), n_frames=0, info={"unavailable": "no frames"})
        padded = np.concatenate([np.full(context - 1, brightness[0], np.float32), brightness])
        windows = np.lib.stride_tricks.sliding_window_view(padded, context)[..., None]
        return Windows(inputs={"brightness": np.ascontiguousarray(windows)}, label_frames=np.arange(n),
                       n_frames=n)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        frames = np.full(windows.n_frames, np.nan)
        frames[windows.label_frames] = np.asarray(predictions, dtype=np.float64).reshape(len(windows), -1)[:, 0]
        return frames


MODALITY = BrightnessModality()
