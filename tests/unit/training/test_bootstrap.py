"""The bundled models' bookkeeping: which folders hold them, so the test suite serves them only when they are."""

from __future__ import annotations

import json
from pathlib import Path

from shared.fusion import FUSION_METADATA, FUSION_MODEL_DIR
from shared.settings import MODALITIES
from training.bootstrap import bundled_models_ready, foreign_models
from training.fusion import dataset_fingerprint


def _fake_repository(models_dir: Path, dataset_hash: str, *, fusion: bool = True) -> None:
    """Version folders as the trainer publishes them (the SavedModel's bytes do not matter here)."""
    for name in MODALITIES:
        version = models_dir / name / "1"
        version.mkdir(parents=True)
        (version / "saved_model.pb").write_bytes(b"")
        (version / "metadata.json").write_text(json.dumps({"dataset_hash": dataset_hash}))
    if fusion:
        (models_dir / FUSION_MODEL_DIR / "1").mkdir(parents=True)
        (models_dir / FUSION_MODEL_DIR / "1" / FUSION_METADATA).write_text("{}")


def test_models_of_the_bundled_set_are_ready_and_others_are_not(synthetic_dataset: Path, tmp_path: Path) -> None:
    from shared.data import discover

    clips = [c for c in discover(synthetic_dataset) if c.labels is not None]
    ours, theirs, unfused = tmp_path / "ours", tmp_path / "theirs", tmp_path / "unfused"
    _fake_repository(ours, dataset_fingerprint(clips))
    _fake_repository(theirs, "a user's own data set")
    _fake_repository(unfused, dataset_fingerprint(clips), fusion=False)
    assert bundled_models_ready(ours, synthetic_dataset)
    assert not bundled_models_ready(theirs, synthetic_dataset)
    assert foreign_models(theirs, MODALITIES, clips) == list(MODALITIES)
    assert not bundled_models_ready(unfused, synthetic_dataset)
    assert not bundled_models_ready(ours, tmp_path / "no data set")
    (ours / "face" / "1" / "saved_model.pb").unlink()
    assert not bundled_models_ready(ours, synthetic_dataset)
