"""run_modality's statuses with real parts: a modality that sees nothing is 'unavailable', a broken model
server makes it 'failed' with a readable detail, and neither raises (one modality never sinks a job)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.client import GrpcPredictor
from shared.pipeline import align_results, run_modality
from shared.settings import Settings
from tests.ensemble_support import write_tiny_video

SETTINGS = Settings()  # the documented defaults: what a caller that read the settings passes down


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {"with_audio": write_tiny_video(root / "with_audio.mp4", seconds=3.0),
            "silent": write_tiny_video(root / "silent.mp4", seconds=3.0, audio=False)}


def closed_server(name: str) -> GrpcPredictor:
    return GrpcPredictor("127.0.0.1:1", name, timeout_s=1.0, retries=0)


def test_no_audio_stream_is_unavailable(videos: dict[str, Path]) -> None:
    stages: list[str] = []
    result = run_modality("audio", videos["silent"], subject=0, predictor=closed_server("audio"),
                          metadata={"preprocessing": {}}, settings=SETTINGS,
                          progress=lambda _m, stage, _f: stages.append(stage))
    assert result.status == "unavailable", result.detail
    assert "audio" in result.detail.lower()
    assert stages[0] == "preparing"


def test_a_model_server_that_is_down_fails_the_modality_with_a_reason(videos: dict[str, Path]) -> None:
    result = run_modality("audio", videos["with_audio"], subject=0, predictor=closed_server("audio"),
                          metadata={"preprocessing": {}, "version": 3}, settings=SETTINGS)
    assert result.status == "failed"
    assert "127.0.0.1:1" in result.detail or "unavailable" in result.detail.lower(), result.detail
    assert result.seconds > 0


def test_no_face_in_the_video_is_unavailable(videos: dict[str, Path]) -> None:
    result = run_modality("landmarks", videos["with_audio"], subject=0, predictor=closed_server("landmarks"),
                          metadata={"preprocessing": {}}, settings=SETTINGS)
    assert result.status == "unavailable", result.detail
    assert result.values.size == 75 and np.isnan(result.values).all()
    assert "no face found in the listener region (the whole" in result.detail  # which region was searched
    assert any(note.startswith("listener searched in the whole") for note in result.notes), result.notes


def test_unknown_modality_fails_and_alignment_fills_missing_modalities(videos: dict[str, Path]) -> None:
    broken = run_modality("smell", videos["with_audio"], subject=0, predictor=closed_server("smell"), metadata={},
                          settings=SETTINGS)
    assert broken.status == "failed" and "smell" in broken.detail
    aligned = align_results({"smell": broken}, ["smell", "audio"])
    assert aligned["audio"].status == "failed" and aligned["audio"].values.size == 0
