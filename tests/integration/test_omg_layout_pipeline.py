"""The whole pipeline, training included, on the real recording layout (2560x720, larger storyteller left).

Models are trained on a generated ``--layout omg`` set and applied to it and to the same clips rendered as the
listener alone at 1280x720: the fused CCC may differ by at most :data:`FUSED_CCC_MARGIN`, every value stays in
the label range, and the result CSVs score with the official maths through ``empathy score``.
Audio and text read the sound track, which is identical in both layouts; the three vision modules are the ones
the layout can mislead, so those are trained here (tiny models: 2 shared CPU cores).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cli.main import main as empathy
from serving.client import open_models
from shared.data import discover, read_labels
from shared.pipeline import analyze_video, listener_notes
from shared.results import build_document, to_csv
from shared.scoring import official_ccc, score_dirs
from shared.settings import Settings
from synthetic.dataset import generate_dataset

pytestmark = pytest.mark.slow

VISION = ("face", "landmarks", "body")
# Margins of |CCC at 2560x720 - CCC at 1280x720| per clip: how far two renderings of the same listener may
# score apart with the same trained models. A model trained on another CPU is another model (other rounding,
# another trajectory), so the margins come from runs on both CPU kinds of this project's machines and from
# several training seeds (Story 2, subjects 1 and 2):
#   Intel Xeon, seed 0: fused 0.002, modules <= 0.021;
#   AMD EPYC without oneDNN, seed 0: fused 0.0248;
#   AMD EPYC with oneDNN, seeds 0/1/2, the face fitted every 3rd window as here: fused 0.0164/0.0098/0.0152,
#   modules <= 0.041 (face) / 0.025 (body) / 0.035 (landmarks); with the face fitted on every window, seed 0's
#   face reached 0.12 (its training had collapsed): hence the stride, as in the bundled build;
#   another AMD EPYC machine (2026-12-06), seed 0: fused 0.019, but the face 0.085 apart on one clip, in favour of
#   2560x720 (0.755 against 0.671 for the listener alone).
# Margins: 1.5x the largest of these where both directions are errors (the fused curve); a module is only held to
# not scoring *worse* at 2560x720 than alone, by more than its margin: a listener region that takes the storyteller
# or misses the listener moves the vision modules' CCC down by far more (tens of points), which is what this test
# is for, while a module that happens to score better on the wide rendering is a training trajectory, not a fault.
FUSED_CCC_MARGIN = 0.04
MODULE_CCC_MARGIN = 0.065
# The bundled models' sizes and face stride (training/bootstrap.py), fewer epochs: models must have learned
# something (validation CCC 0.55-0.90 measured) or the comparison only compares noise re-scaled to the subject's std.
RUNS = {
    "face": {"hparams": {"filters": [8, 16], "dense": [32, 16], "bn_momentum": 0.9}, "epochs": 6, "batch_size": 64,
             "train_stride": 3},
    "landmarks": {"hparams": {"filters": [32, 32, 48, 48], "dense": 16, "bn_momentum": 0.9}, "epochs": 12,
                  "batch_size": 128},
    "body": {"hparams": {"depth": 10, "base_filters": 8, "head": [32, 16], "bn_momentum": 0.9},
             "params": {"size": 64}, "epochs": 6, "batch_size": 32},
}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("omg_layout")
    common = {"subjects": (1, 2), "stories": (1, 2, 3), "duration_s": 12.0, "seed": 0}
    generate_dataset(root / "omg", width=2560, height=720, layout="omg", **common)
    generate_dataset(root / "single", width=1280, height=720, **common)
    return {"omg": root / "omg", "single": root / "single"}


@pytest.fixture(scope="module")
def models(sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.trainer import train

    models_dir = tmp_path_factory.mktemp("omg_models")
    for name in VISION:
        run = RUNS[name]
        result = train(name, sets["omg"], models_dir=models_dir, epochs=run["epochs"], patience=run["epochs"],
                       batch_size=run["batch_size"], hparams=run["hparams"], params=run.get("params"),
                       train_stride=run.get("train_stride", 1), val_story=2)
        # learned something: judged after the low-pass and re-scaling every prediction goes through (a model
        # whose raw output has the right shape at a small amplitude scores low raw: the face, 0.07-0.08 raw on
        # this 12 s set on an AMD EPYC, still follows the labels at 0.5-0.75 once re-scaled)
        assert result.metadata["val_ccc_filtered"] > 0.3, (name, result.metadata["val_ccc_filtered"])
        assert result.metadata["preprocessing"]["listener_region"] == "auto"
        assert result.metadata["preprocessing"]["listener_layouts"] == ["2560x720"]
        assert result.metadata["label_range"] == [-1.0, 1.0]
    return models_dir


def test_trained_on_the_omg_layout_the_fused_curve_matches_the_listener_alone(
        sets: dict[str, Path], models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scores: dict[str, list[float]] = {"omg": [], "single": []}
    modules: dict[str, dict[str, list[float]]] = {}
    for layout, root in sets.items():
        predictions, truth = tmp_path / layout, tmp_path / f"{layout}_annotations"
        predictions.mkdir()
        truth.mkdir()
        for clip in [c for c in discover(root) if c.story == 2]:
            predictors, metadata = open_models(VISION, Settings(), models_dir=models, local=True)
            result = analyze_video(clip.video, subject=clip.subject, modalities=VISION, predictors=predictors,
                                   metadata=metadata, models_dir=models, settings=Settings())
            for name, module in result.modalities.items():
                assert module.status == "ok", (layout, name, module.detail)
                seen = module.values[np.isfinite(module.values)]
                assert seen.size and seen.min() >= -1.0 and seen.max() <= 1.0, (layout, name)
            assert -1.0 <= result.fusion.valence.min() and result.fusion.valence.max() <= 1.0
            notes = listener_notes(result.modalities)
            if layout == "omg":
                assert any("official OMG-Empathy split" in n for n in notes), notes
            assert not any("ambiguous" in n for n in notes), notes
            labels = read_labels(clip.labels).astype(np.float64)
            scores[layout].append(official_ccc(labels, result.fusion.valence))
            for name, module in result.modalities.items():
                modules.setdefault(name, {}).setdefault(layout, []).append(
                    official_ccc(labels, np.nan_to_num(module.values)))
            document = build_document(fusion=result.fusion, modalities=result.modalities, subject=clip.subject,
                                      fps=result.fps, video=clip.video.name, notes=notes)
            (predictions / f"{clip.name}.csv").write_text(to_csv(document))
            shutil.copy(clip.labels, truth / clip.labels.name)
        # the CSVs the project writes pass the official scorer unchanged and score what was computed here
        assert empathy(["score", str(predictions), str(truth)]) == 0
        assert "would run on these inputs unchanged" in capsys.readouterr().out
        report = score_dirs(predictions, truth)
        assert report.personalized_mean == pytest.approx(np.mean(scores[layout]), abs=1e-4)
    differences = np.abs(np.array(scores["omg"]) - np.array(scores["single"]))
    print(f"fused CCC 2560x720 {scores['omg']} vs 1280x720 {scores['single']}: max difference {differences.max():.4f}")
    assert differences.max() <= FUSED_CCC_MARGIN
    shortfalls = {name: float((np.array(by_layout["single"]) - np.array(by_layout["omg"])).max())
                  for name, by_layout in modules.items()}
    print(f"per module, CCC alone minus CCC at 2560x720 (worst clip): {shortfalls}")
    for name, shortfall in shortfalls.items():
        assert shortfall <= MODULE_CCC_MARGIN, (name, modules[name])
