"""The Modality base class: every modality is one, and the optional hooks have working defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.modalities.base import Modality, Windows, get_modality
from shared.modalities.vision import VisionModality
from shared.settings import MODALITIES


def test_every_modality_is_a_modality_and_the_vision_ones_share_a_decode() -> None:
    for name in MODALITIES:
        modality = get_modality(name)
        assert isinstance(modality, Modality) and modality.name == name
        assert isinstance(modality.default_params(), dict) and modality.default_params()
    vision = {name for name in MODALITIES if isinstance(get_modality(name), VisionModality)}
    assert vision == {"face", "landmarks", "body"}
    assert get_modality("audio").frame_consumer(Path("unused.mp4"), subject=1) is None


class Minimal(Modality):
    name = "minimal"

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict | None = None) -> Windows:
        return Windows(inputs={"x": np.zeros((2, 1), np.float32)}, label_frames=np.array([0, 1]), n_frames=2)

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        return np.asarray(predictions, dtype=np.float64).reshape(-1)


def test_the_optional_hooks_default_to_doing_nothing() -> None:
    modality = Minimal()
    windows = modality.prepare(Path("unused.mp4"), subject=1)
    assert modality.default_params() == {}
    assert modality.fit_params([windows], {"a": 1}) == {"a": 1}
    assert modality.apply_fitted(windows, {"a": 1}) is windows
    assert modality.frame_consumer(Path("unused.mp4"), subject=1) is None


def test_a_modality_without_prepare_or_to_frames_cannot_be_made() -> None:
    class NoFrames(Modality):
        name = "broken"

        def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                    params: dict | None = None) -> Windows:
            raise NotImplementedError

    with pytest.raises(TypeError, match="to_frames"):
        NoFrames()
