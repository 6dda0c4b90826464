"""Every result says which models it used and what they were trained on (issue 22, point 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.pipeline import listener_notes
from shared.quality import SYNTHETIC_WARNING, model_description, models_note
from shared.values import ModalityResult
from training.trainer import dataset_source


def _result(name: str, metadata: dict) -> ModalityResult:
    return ModalityResult(name=name, values=np.zeros(3), missing=np.zeros(3, bool), status="ok",
                          quality={"model": model_description(metadata)})


def test_models_trained_on_the_synthetic_set_are_named_once_per_job() -> None:
    results = {"audio": _result("audio", {"version": 1, "dataset_source": "synthetic"}),
               "face": _result("face", {"version": 2, "dataset_source": "synthetic"}),
               "body": _result("body", {"version": 1, "dataset_source": "recordings", "dataset_hash": "abc"})}
    assert results["audio"].quality["model"]["trained_on"] == SYNTHETIC_WARNING
    assert "abc" in results["body"].quality["model"]["trained_on"]
    note = models_note(results)
    assert note.startswith("audio, face: models trained on the bundled SYNTHETIC data set")
    assert "real use needs training on licensed data (empathy train)" in note
    assert listener_notes(results).count(note) == 1


def test_no_note_when_the_models_learnt_real_recordings() -> None:
    assert models_note({"audio": _result("audio", {"dataset_source": "recordings"})}) == ""
    assert model_description({})["trained_on"].startswith("unknown")


def test_training_records_whether_the_data_set_is_synthetic(tmp_path: Path) -> None:
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "synthetic.json").write_text("{}")
    (tmp_path / "real").mkdir()
    assert dataset_source(tmp_path / "synth", []) == "synthetic"
    assert dataset_source(tmp_path / "real", []) == "recordings"
