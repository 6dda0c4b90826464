"""shared.results: the result document of one video and its OMG-Empathy-style CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from shared.data import read_labels
from shared.fusion import FusionResult
from shared.results import build_document, csv_columns, to_csv
from shared.values import ModalityResult

N = 5
FPS = 25.0


def _module(name: str, values: np.ndarray, status: str = "ok", detail: str = "") -> ModalityResult:
    return ModalityResult(name=name, values=values, missing=~np.isfinite(values), status=status, detail=detail,
                          seconds=0.123456, model_version=2)


def _fusion(*, band: bool = True) -> FusionResult:
    return FusionResult(valence=np.array([0.1, 0.2, 0.30000049, -0.4, 0.5]), agreement=np.array([1.0, 0.9, 0.8, 0.7, 0.6]),
                        used=["audio"], weights={"audio": 0.6666666666, "body": 0.3333333333},
                        band_low=np.full(N, -0.2) if band else np.zeros(0),
                        band_high=np.full(N, 0.6) if band else np.zeros(0), method="ccc", spec="ccc",
                        cutoff_hz=0.15, cutoff_requested_hz=0.01, band_coverage=0.8 if band else None,
                        model_version=1, notes=["band from fusion model 1"])


def _modules() -> dict[str, ModalityResult]:
    return {"audio": _module("audio", np.array([0.1, np.nan, 0.3, -0.4, 0.5])),
            "body": _module("body", np.zeros(0), status="failed", detail="video.mp4: truncated")}


def test_the_document_says_what_was_fused_and_how() -> None:
    document = build_document(fusion=_fusion(), modalities=_modules(), subject=3, fps=FPS, video="clip.mp4",
                              job_id="j" * 32, seconds=12.3456, notes=["listener: right half"])
    assert (document["job"], document["video"], document["subject"], document["fps"]) == ("j" * 32, "clip.mp4", 3, 25.0)
    assert document["n_frames"] == N and document["duration_s"] == 0.2 and document["seconds"] == 12.346
    assert document["valence"] == [0.1, 0.2, 0.3, -0.4, 0.5]  # rounded to 6 decimals
    assert document["label_range"] == [-1.0, 1.0]
    assert document["band"] == {"low": [-0.2] * N, "high": [0.6] * N, "coverage": 0.8}
    assert document["fusion"] == {"used": ["audio"], "weights": {"audio": 0.666667, "body": 0.333333},
                                  "weights_spec": "ccc", "method": "ccc", "cutoff_hz": 0.15,
                                  "cutoff_requested_hz": 0.01, "model_version": 1}
    assert document["notes"] == ["listener: right half", "band from fusion model 1"]  # given, then the fusion's
    assert document["degraded"] is True  # body failed
    audio, body = document["modalities"]["audio"], document["modalities"]["body"]
    assert audio == {"status": "ok", "detail": "", "seconds": 0.123, "model_version": 2,
                     "valence": [0.1, None, 0.3, -0.4, 0.5]}  # NaN (not seen) -> null
    assert body["valence"] == [None] * N and body["detail"] == "video.mp4: truncated"
    json.dumps(document, allow_nan=False)  # strict JSON: what the gateway serves


def test_the_fusion_as_made_is_reported_and_a_complete_run_is_not_degraded() -> None:
    fusion = _fusion()
    fusion.spec, fusion.cutoff_hz, fusion.label_range = "audio=1", 0.5, (-2.0, 2.0)
    modules = {"audio": _module("audio", np.full(N, 0.2))}
    document = build_document(fusion=fusion, modalities=modules, subject=0, fps=FPS, video="v.mp4")
    assert document["fusion"]["weights_spec"] == "audio=1" and document["fusion"]["cutoff_hz"] == 0.5
    assert document["label_range"] == [-2.0, 2.0]  # the range the fusion bounded to, not a default
    assert document["degraded"] is False and document["job"] is None and document["seconds"] is None


def test_the_csv_has_one_row_per_frame_valence_first(tmp_path: Path) -> None:
    document = build_document(fusion=_fusion(), modalities=_modules(), subject=3, fps=FPS, video="clip.mp4")
    text = to_csv(document)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == csv_columns(document) == ["valence", "agreement", "band_low", "band_high", "audio", "body"]
    assert len(rows) == N + 1
    assert rows[1] == ["0.100000", "1.000000", "-0.200000", "0.600000", "0.100000", ""]
    assert rows[2][4] == "" and rows[3][0] == "0.300000"  # a frame the module did not see is an empty cell
    (tmp_path / "pred.csv").write_text(text)
    np.testing.assert_allclose(read_labels(tmp_path / "pred.csv"), document["valence"], atol=1e-6)  # scorers read it


def test_without_a_band_its_columns_stay_empty() -> None:
    document = build_document(fusion=_fusion(band=False), modalities=_modules(), subject=3, fps=FPS, video="v")
    assert document["band"] == {"low": [], "high": [], "coverage": None}
    rows = list(csv.reader(io.StringIO(to_csv(document))))
    assert all(row[2] == row[3] == "" for row in rows[1:]) and rows[1][0] == "0.100000"
