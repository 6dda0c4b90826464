"""Fusion maths: weights (paper, CCC, explicit), missing data weighed out, agreement, final low-pass."""

from __future__ import annotations

import numpy as np
import pytest

from shared.fusion import FusionError, fuse
from shared.fusion_methods import parse_weights
from shared.postprocess import smooth_and_rescale
from shared.settings import MODALITIES, PAPER_FUSION_WEIGHTS
from shared.values import ModalityResult

N = 1500  # 60 s at 25 fps


def result(name: str, values: np.ndarray, status: str = "ok") -> ModalityResult:
    values = np.asarray(values, dtype=np.float64)
    return ModalityResult(name=name, values=values, missing=~np.isfinite(values), status=status)


def constant_results(levels: dict[str, float]) -> dict[str, ModalityResult]:
    return {name: result(name, np.full(N, level)) for name, level in levels.items()}


def test_paper_weights_normalise_to_the_papers_values() -> None:
    fused = fuse(constant_results({m: 0.1 for m in MODALITIES}), parse_weights("paper"), subject_stats=None)
    rounded = {name: round(w, 2) for name, w in fused.weights.items()}
    assert rounded == {"audio": 0.29, "text": 0.29, "body": 0.29, "landmarks": 0.11, "face": 0.03}
    assert sum(fused.weights.values()) == pytest.approx(1.0)
    assert sorted(fused.used) == sorted(MODALITIES)


def test_weighted_mean_without_filter_or_rescaling() -> None:
    levels = {"audio": 0.5, "text": 0.2, "face": -0.4, "landmarks": 0.0, "body": -0.2}
    fused = fuse(constant_results(levels), parse_weights("paper"), cutoff_hz=0, subject_stats=None)
    expected = (0.5 + 0.2 - 0.2 + 0.4 * 0.0 + 0.1 * -0.4) / 3.5
    assert np.allclose(fused.valence, expected)


def test_a_failed_modality_is_weighed_out_and_weights_renormalised() -> None:
    results = constant_results({"audio": 0.5, "text": 0.5, "landmarks": 0.5, "face": 0.5})
    results["body"] = result("body", np.full(N, -9.0), status="failed")  # garbage must not leak in
    fused = fuse(results, parse_weights("paper"), cutoff_hz=0, subject_stats=None)
    assert "body" not in fused.used
    assert np.allclose(fused.valence, 0.5)
    assert fused.weights["audio"] == pytest.approx(1 / 2.5)
    assert sum(fused.weights.values()) == pytest.approx(1.0)


def test_missing_frames_get_per_frame_renormalised_weights() -> None:
    audio = np.full(N, 1.0)
    audio[100:300] = np.nan  # e.g. silence
    results = {"audio": result("audio", audio), "text": result("text", np.full(N, 0.0)),
               "face": result("face", np.full(N, 0.5))}
    fused = fuse(results, parse_weights("paper"), cutoff_hz=0, subject_stats=None)
    assert np.allclose(fused.valence[:100], (1.0 + 0.0 + 0.1 * 0.5) / 2.1)
    assert np.allclose(fused.valence[100:300], (0.0 + 0.1 * 0.5) / 1.1)
    assert fused.coverage[150] == 2 and fused.coverage[50] == 3


def test_frames_no_module_sees_are_bridged_with_zero_agreement() -> None:
    a = np.linspace(-0.5, 0.5, N)
    a[600:700] = np.nan
    b = a.copy()
    fused = fuse({"audio": result("audio", a), "text": result("text", b)}, parse_weights("paper"),
                 cutoff_hz=0, subject_stats=None)
    assert np.isfinite(fused.valence).all()
    assert np.allclose(fused.valence[600:700], np.linspace(a[599], a[700], 102)[1:-1])
    assert (fused.agreement[600:700] == 0).all()
    assert np.allclose(fused.agreement[:600], 1.0)


def test_agreement_high_when_modules_agree_low_when_they_disagree() -> None:
    t = np.arange(N) / 25.0
    curve = 0.2 * np.sin(2 * np.pi * t / 30.0)
    stats = {"mean": 0.0, "std": 0.2}
    agree = fuse({m: result(m, curve) for m in ("audio", "text", "body")}, parse_weights("paper"),
                 subject_stats=stats)
    assert np.allclose(agree.agreement, 1.0)
    oppose = fuse({"audio": result("audio", curve + 0.2), "text": result("text", curve - 0.2)},
                  parse_weights("paper"), subject_stats=stats)
    assert np.allclose(oppose.agreement, 0.0)  # weighted std = subject std -> 0
    half = fuse({"audio": result("audio", curve + 0.05), "text": result("text", curve - 0.05)},
                parse_weights("paper"), subject_stats=stats)
    assert np.allclose(half.agreement, 0.75)  # std 0.05 / 0.2
    single = fuse({"audio": result("audio", curve)}, parse_weights("paper"), subject_stats=stats)
    assert np.allclose(single.agreement, 0.0)  # one module corroborates nothing
    for fused in (agree, oppose, half, single):
        assert fused.agreement.min() >= 0 and fused.agreement.max() <= 1


def test_final_low_pass_and_rescaling_are_applied() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(N) / 25.0
    slow = np.sin(2 * np.pi * t / 120.0)
    results = {m: result(m, slow + 0.5 * rng.standard_normal(N)) for m in ("audio", "text", "body")}
    stats = {"mean": 0.2, "std": 0.1}
    fused = fuse(results, parse_weights("paper"), cutoff_hz=0.01, subject_stats=stats)
    raw = np.mean([r.values for r in results.values()], axis=0)
    assert np.allclose(fused.valence, smooth_and_rescale(raw, cutoff_hz=0.01, stats=stats))
    assert np.std(np.diff(fused.valence)) < 0.02 * np.std(np.diff(raw))
    assert fused.valence.mean() == pytest.approx(0.2, abs=1e-9)
    assert fused.valence.std() == pytest.approx(0.1, abs=1e-9)
    unfiltered = fuse(results, parse_weights("paper"), cutoff_hz=0, subject_stats=stats)
    assert np.std(np.diff(unfiltered.valence)) > 10 * np.std(np.diff(fused.valence))


def test_parse_weights_ccc_and_explicit() -> None:
    metadata = {"audio": {"val_ccc": 0.32, "val_ccc_filtered": 0.4}, "text": {"val_ccc": 0.3},
                "face": {"val_ccc": -0.1}}
    audio, text = 0.16 / 0.84, 0.09 / 0.91  # rho^2 / (1 - rho^2) of the filtered CCC, else the raw one
    assert parse_weights("ccc", metadata) == pytest.approx({"audio": audio, "text": text, "face": 0.0})
    assert parse_weights("audio=1, text=2") == {"audio": 1.0, "text": 2.0}
    for bad in ("audio", "voice=1", "audio=-1", "audio=x"):
        with pytest.raises(ValueError):
            parse_weights(bad)
    assert parse_weights("ccc", {}) == PAPER_FUSION_WEIGHTS  # no metadata: the paper's (resolve notes it)
    fused = fuse(constant_results({"audio": 1.0, "text": 0.0, "face": 5.0}), parse_weights("ccc", metadata),
                 cutoff_hz=0, subject_stats=None)
    assert fused.used == ["audio", "text"]  # face has weight 0
    assert np.allclose(fused.valence, audio / (audio + text))


def test_nothing_to_fuse_raises() -> None:
    results = {"audio": result("audio", np.full(N, np.nan), status="unavailable"),
               "text": result("text", np.zeros(N), status="failed")}
    with pytest.raises(FusionError, match="no module to fuse"):
        fuse(results, parse_weights("paper"), subject_stats=None)
    with pytest.raises(FusionError, match="number of frames"):
        fuse({"audio": result("audio", np.zeros(10)), "text": result("text", np.zeros(11))},
             parse_weights("paper"), subject_stats=None)
