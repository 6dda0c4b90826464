"""``empathy train fusion`` end to end on exported (tiny, untrained) audio and text models: the fusion model's
metadata, versioning, the bootstrap's data-set guard, and ``empathy evaluate`` with every fusion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.data import discover
from shared.fusion import FUSION_MODEL_DIR, load_fusion_model
from tests.ensemble_support import export_tiny_model
from training.fusion import NO_FILTER
from training.trainer import CUTOFF_GRID_HZ, dataset_hash

pytestmark = pytest.mark.slow

MODULES = ("audio", "text")  # the cheapest to run; fusion does not care which modules it fuses


@pytest.fixture(scope="module")
def two_models(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("fusion-models")
    clip = next(c for c in discover(synthetic_dataset) if c.subject == 1 and c.story == 2)
    for seed, name in enumerate(MODULES):
        export_tiny_model(models, name, clip.video, transcript=clip.transcript, seed=seed)
    return models


def test_train_fusion_exports_a_versioned_fusion_model(synthetic_dataset: Path, two_models: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from cli.train import evaluate_main, train_main
    from training.bootstrap import ensure_fusion

    # the tiny models record no data-set hash: the bootstrap must not fit a fusion for them on this data
    assert ensure_fusion(two_models, data_dir=synthetic_dataset) is None
    assert load_fusion_model(two_models) is None

    assert train_main(["fusion", "--data", str(synthetic_dataset), "--models-dir", str(two_models)]) == 0
    out = capsys.readouterr().out
    assert "fusion: exported" in out and "learned" in out
    model = load_fusion_model(two_models)
    assert model is not None and model.version == 1
    meta = json.loads((two_models / FUSION_MODEL_DIR / "1" / "metadata.json").read_text())
    assert meta["dataset_hash"] == dataset_hash([c for c in discover(synthetic_dataset) if c.labels is not None])
    assert set(meta["modules"]) == set(MODULES) and all(m["version"] == 1 for m in meta["modules"].values())
    assert meta["val_clips"] == ["Subject_1_Story_2", "Subject_2_Story_2"]
    assert set(meta["methods"]) == {"paper", "ccc", "learned"}
    for entry in meta["methods"].values():
        grid = (NO_FILTER, *CUTOFF_GRID_HZ)
        assert entry["cutoff_hz"] in grid and set(entry["cutoff_scores"]) == {str(c) for c in grid}
        assert entry["band"]["k"] > 0 and entry["band"]["val_coverage"] == pytest.approx(0.8, abs=0.02)
    learned = model.learned()
    assert learned is not None and learned.modules == list(MODULES) and len(learned.coef_values) == 2

    assert train_main(["fusion", "--data", str(synthetic_dataset), "--models-dir", str(two_models)]) == 0
    assert load_fusion_model(two_models).version == 2  # a new version, the old one kept
    assert (two_models / FUSION_MODEL_DIR / "1" / "metadata.json").is_file()
    capsys.readouterr()

    assert evaluate_main(["--data", str(synthetic_dataset), "--models-dir", str(two_models),
                          "--modality", "audio,text", "--stories", "3"]) == 0
    printed = capsys.readouterr().out
    for name in ("fusion:paper", "fusion:ccc", "fusion:learned"):
        assert f"{name}: CCC per subject" in printed
    side = printed.split("CCC side by side", 1)[1]
    assert all(name in side for name in ("audio", "text", "fusion:learned", "Subject 1", "Story 3", "Mean"))
