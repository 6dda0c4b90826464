"""The speed-ups change how the work is done, not (beyond a stated tolerance) what comes out.

* One shared decode for face, landmarks and body (``empathy analyze``) gives exactly the windows each
  modality's own ``prepare`` gives.
* The fast defaults (``EMPATHY_PREDICT_EVERY`` = 3: vision models predict every 3rd frame, interpolated;
  batches of ``EMPATHY_BATCH_SIZE`` windows per model call) against the slow settings (every frame, one
  window per call), on a real synthetic clip with real SavedModels, all five modalities:
  the fused curve moves by at most :data:`FUSED_TOLERANCE` of the listener's label std and each module by at
  most :data:`MODULE_TOLERANCE`. The modules are low-passed at 0.1 Hz here, the highest cut-off the trainer's
  grid can choose (the paper's are 0.004-0.01 Hz, which smooth far more and hide the interpolation better).
  Measured with the bundled models on a 30 s clip: fused 0.15 %, body 1.4 %, face 0.6 % at k = 3; at k = 5
  the body module moves 5.2 %, which is why the default is 3.
* Batches capped by bytes (``EMPATHY_MAX_BATCH_MB``) predict what one big batch predicts.
* Training never thins windows out, whatever the setting says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.client import LocalPredictor, _batch_slices
from serving.model_store import read_metadata, version_dir
from shared.data import discover
from shared.modalities.base import get_modality
from shared.pipeline import analyze_video, inference_params, prepare_vision_together
from shared.settings import MODALITIES, Settings, load_settings
from tests.ensemble_support import TINY_SUBJECT_STATS, export_tiny_model

VISION = ("face", "landmarks", "body")
FUSED_TOLERANCE = 0.01  # of the subject's label std, max over frames
MODULE_TOLERANCE = 0.05
HIGHEST_GRID_CUTOFF_HZ = 0.1


def _clip(dataset: Path):  # noqa: ANN202 - a shared.data.Clip
    return next(c for c in discover(dataset) if c.subject == 1 and c.story == 2)


def test_one_shared_decode_gives_the_windows_each_modality_makes_alone(synthetic_dataset: Path) -> None:
    video = _clip(synthetic_dataset).video
    metadata = {name: {"preprocessing": {**get_modality(name).default_params(), "known_subjects": [1, 2]}}
                for name in VISION}
    together = prepare_vision_together(video, VISION, subject=1, metadata=metadata, settings=Settings())
    for name in VISION:
        alone = get_modality(name).prepare(video, subject=1, params=inference_params(name, metadata[name], Settings()))
        shared = together[name]
        assert shared.error is None and shared.windows is not None, shared.error
        assert shared.seconds > 0
        np.testing.assert_array_equal(shared.windows.label_frames, alone.label_frames)
        np.testing.assert_array_equal(shared.windows.missing, alone.missing)
        assert shared.windows.info.get("crop") == alone.info.get("crop")
        for key, value in alone.inputs.items():
            np.testing.assert_array_equal(np.asarray(shared.windows.inputs[key][:]), np.asarray(value[:]))


def test_a_broken_video_fails_every_modality_of_the_shared_decode(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    metadata = {name: {"preprocessing": get_modality(name).default_params()} for name in VISION}
    together = prepare_vision_together(broken, VISION, subject=1, metadata=metadata, settings=Settings())
    assert set(together) == set(VISION)
    assert all(p.windows is None and p.error is not None for p in together.values())


@pytest.fixture(scope="module")
def tiny_models(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    clip = _clip(synthetic_dataset)
    for name in MODALITIES:
        export_tiny_model(models, name, clip.video, transcript=clip.transcript)
    return models


def test_fast_defaults_stay_within_tolerance_of_the_slow_settings(synthetic_dataset: Path, tiny_models: Path) -> None:
    clip = _clip(synthetic_dataset)
    fast_settings, slow_settings = Settings(), Settings(predict_every=1, batch_size=1)
    assert fast_settings.predict_every > 1 and fast_settings.batch_size > 1  # the defaults are the fast ones
    metadata = {}
    for name in MODALITIES:
        metadata[name] = {**read_metadata(version_dir(tiny_models, name)), "cutoff_hz": HIGHEST_GRID_CUTOFF_HZ}
    runs = {}
    for label, settings in (("fast", fast_settings), ("slow", slow_settings)):
        predictors = {name: LocalPredictor(version_dir(tiny_models, name), batch_size=settings.batch_size)
                      for name in MODALITIES}
        runs[label] = analyze_video(clip.video, subject=1, predictors=predictors, metadata=metadata,
                                    transcript=clip.transcript, settings=settings)
    fast, slow = runs["fast"], runs["slow"]
    std = TINY_SUBJECT_STATS["1"]["std"]
    assert sorted(fast.fusion.used) == sorted(MODALITIES)
    assert np.isfinite(fast.fusion.valence).all() and np.std(slow.fusion.valence) > 0
    fused = np.max(np.abs(fast.fusion.valence - slow.fusion.valence)) / std
    assert fused <= FUSED_TOLERANCE, f"fused curve moved by {fused:.4f} std"
    for name in MODALITIES:
        a, b = fast.modalities[name].values, slow.modalities[name].values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        seen = np.isfinite(a)
        moved = np.max(np.abs(a[seen] - b[seen])) / std
        assert moved <= MODULE_TOLERANCE, f"{name} moved by {moved:.4f} std"


def test_byte_capped_batches_predict_the_same_as_large_ones(synthetic_dataset: Path, tiny_models: Path) -> None:
    modality = get_modality("body")
    windows = modality.prepare(_clip(synthetic_dataset).video, subject=1,
                               params={**modality.default_params(), "predict_every": 1})
    body = windows.inputs["body"]
    assert body.shape[1:] == (16, 128, 128)  # 1 MiB a window
    slices = _batch_slices({"body": body}, 64, 3 * 2**20)
    assert {s.stop - s.start for s in slices[:-1]} == {3} and slices[-1].stop == len(body)
    capped = LocalPredictor(version_dir(tiny_models, "body"), batch_size=64, max_batch_mb=3).predict(windows.inputs)
    whole = LocalPredictor(version_dir(tiny_models, "body"), batch_size=64, max_batch_mb=1024).predict(windows.inputs)
    np.testing.assert_allclose(capped, whole, rtol=1e-4, atol=1e-5)


def test_training_windows_ignore_the_inference_setting(synthetic_dataset: Path) -> None:
    settings = load_settings({"EMPATHY_PREDICT_EVERY": "5"})
    modality = get_modality("landmarks")
    video = _clip(synthetic_dataset).video
    training = modality.prepare(video, subject=1, params=modality.default_params())  # what the trainer passes
    assert len(training) == training.n_frames - int(training.missing.sum())
    params = inference_params("landmarks", {"preprocessing": modality.default_params()}, settings)
    assert params["predict_every"] == 5
    assert "predict_every" not in inference_params("audio", {"preprocessing": {}}, settings)
    serving = modality.prepare(video, subject=1, params=params)
    assert len(serving) < len(training) / 4  # every 5th visible frame (+ each run's last)
