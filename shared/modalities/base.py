"""What every modality offers: one preparation path from a video to model windows, and back to frames.

Training and serving both call :meth:`Modality.prepare`; training then reads ``labels[windows.label_frames]``.
There is deliberately no second, training-only preprocessing function.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.settings import MODALITIES


@dataclass
class Windows:
    """Model-ready windows of one video.

    ``inputs`` is keyed by the SavedModel's ``serving_default`` input names (first axis = window).
    ``label_frames`` gives, per window, the 25 fps frame index (or indices, for sequence outputs such as
    audio's 200 steps) whose valence the window predicts. ``missing`` marks frames the modality cannot see.
    """

    inputs: dict[str, np.ndarray]
    label_frames: np.ndarray
    n_frames: int
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.missing.size == 0:
            self.missing = np.zeros(self.n_frames, dtype=bool)
        if self.missing.shape != (self.n_frames,):
            raise ValueError(f"missing has shape {self.missing.shape}, expected ({self.n_frames},)")

    def __len__(self) -> int:
        return int(self.label_frames.shape[0])


class Modality(Protocol):
    name: str

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """Turn a video into model windows, with preprocessing parameters from the model's metadata."""
        ...

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Map window predictions onto the 25 fps grid: shape (n_frames,), NaN where missing."""
        ...


def get_modality(name: str) -> Modality:
    """The modality object for ``name`` (module ``shared.modalities.<name>`` exposes ``MODALITY``)."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; expected one of {', '.join(MODALITIES)}")
    module = importlib.import_module(f"shared.modalities.{name}")
    return module.MODALITY
