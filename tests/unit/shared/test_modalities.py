"""The Modality base class: every modality is one, and the optional hooks have working defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.modalities.base import Modality, Windows, get_modality
from shared.modalities.vision import VisionModality
from shared.settings import MODALITIES
from tests import REPO


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


def test_a_plugin_whose_preprocessing_is_not_a_modality_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "not_a_modality_plugin.py").write_text(
        "from shared.registry import ModalityEntry\n"
        "ENTRIES = [ModalityEntry('odd', paper_weight=1.0, batch_size=8, preprocessing='os:sep')]\n")
    code = ("from shared.modalities.base import get_modality\n"
            "try:\n    get_modality('odd')\nexcept TypeError as exc:\n    print(exc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
           "EMPATHY_MODALITY_PLUGINS": "not_a_modality_plugin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "modality 'odd': os:sep is a str, not a shared.modalities.base.Modality" in done.stdout


def test_each_modality_names_the_settings_it_records_and_those_it_only_runs_with() -> None:
    from shared.settings import Settings

    settings = Settings(decode_threads=3, body_crop="0.1,0.2,0.9,1.0", asr_source="transcript", lexicons="nrc+vader")
    recorded = {name: get_modality(name).settings_params(settings) for name in MODALITIES}
    runtime = {name: get_modality(name).runtime_params(settings) for name in MODALITIES}
    assert recorded["audio"] == recorded["face"] == recorded["landmarks"] == {}
    assert recorded["body"] == {"body_crop": "0.1,0.2,0.9,1.0"}
    assert recorded["text"]["lexicons"] == "nrc+vader" and "asr_source" not in recorded["text"]
    assert runtime["audio"] == {}
    assert runtime["face"] == runtime["landmarks"] == runtime["body"] == {"decode_threads": 3}
    assert runtime["text"]["asr_source"] == "transcript" and "whisper_options" in runtime["text"]
