"""Per-module post-processing: low-pass at the model's cut-off, re-scaling to the subject's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from shared.postprocess import fill_gaps, postprocess, smooth_and_rescale, stats_for_subject

FPS = 25.0
STATS = {"1": {"mean": 0.3, "std": 0.2}, "2": {"mean": -0.1, "std": 0.05}, "global": {"mean": 0.1, "std": 0.15}}


def _noisy_curve(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FPS
    return 0.4 * np.sin(2 * np.pi * t / 60.0) + 0.3 * rng.standard_normal(n)


def test_rescaled_to_the_subjects_mean_and_std() -> None:
    metadata = {"cutoff_hz": 0.01, "subject_stats": STATS}
    out = postprocess(_noisy_curve(), metadata, subject=2, fps=FPS)
    assert out.mean() == pytest.approx(-0.1, abs=1e-9)
    assert out.std() == pytest.approx(0.05, abs=1e-9)


def test_unknown_subject_uses_global_statistics() -> None:
    metadata = {"cutoff_hz": 0.01, "subject_stats": STATS}
    for subject in (0, 7, None):
        out = postprocess(_noisy_curve(), metadata, subject=subject, fps=FPS)
        assert out.mean() == pytest.approx(0.1, abs=1e-9)
        assert out.std() == pytest.approx(0.15, abs=1e-9)
    assert stats_for_subject(STATS, "1") == {"mean": 0.3, "std": 0.2}
    with pytest.raises(KeyError):
        stats_for_subject({"1": {"mean": 0.0, "std": 1.0}}, 5)


def test_low_pass_removes_frame_noise_but_keeps_the_slow_curve() -> None:
    n = 3000
    t = np.arange(n) / FPS
    slow = np.sin(2 * np.pi * t / 100.0)
    noisy = slow + 0.5 * np.random.default_rng(1).standard_normal(n)
    smooth = smooth_and_rescale(noisy, cutoff_hz=0.05, stats=None, fps=FPS)
    assert np.std(np.diff(smooth)) < 0.05 * np.std(np.diff(noisy))
    assert np.corrcoef(smooth, slow)[0, 1] > 0.95
    # zero-phase: no lag between input trend and output
    lags = range(-50, 51)
    best = max(lags, key=lambda k: np.dot(np.roll(smooth, k), slow))
    assert abs(best) <= 2


def test_missing_frames_stay_missing_and_do_not_drag_the_curve() -> None:
    values = np.full(2000, 0.5)
    values[::7] += 0.01  # some variation so rescale has a shape
    values[500:900] = np.nan
    out = smooth_and_rescale(values, cutoff_hz=0.004, stats=None, fps=FPS)
    assert np.isnan(out[500:900]).all()
    assert np.isfinite(out[:500]).all() and np.isfinite(out[900:]).all()
    assert np.nanmin(out) > 0.49  # a gap is bridged, never read as 0
    rescaled = postprocess(values, {"cutoff_hz": 0.004, "subject_stats": STATS}, 1, fps=FPS)
    assert np.isnan(rescaled[500:900]).all()
    assert np.nanmean(rescaled) == pytest.approx(0.3, abs=1e-9)


def test_all_missing_stays_missing_and_no_metadata_is_identity() -> None:
    assert np.isnan(postprocess(np.full(100, np.nan), {"cutoff_hz": 0.01, "subject_stats": STATS}, 1)).all()
    values = _noisy_curve(200)
    assert np.allclose(postprocess(values, {}, 1), values)


def test_fill_gaps_interpolates_inside_and_extends_at_the_ends() -> None:
    filled = fill_gaps(np.array([np.nan, 1.0, np.nan, 3.0, np.nan]))
    assert filled.tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]


def test_every_module_and_the_fused_curve_stay_in_the_label_range() -> None:
    from shared.pipeline import fuse_results
    from shared.postprocess import bound, label_range, labels_range, postprocess
    from shared.settings import Settings
    from shared.values import ModalityResult

    t = np.arange(2000)
    spiky = np.sin(t / 50.0) + np.where(t < 30, 8.0, 0.0)  # a start-of-clip spike, as seen on the demo clip
    spiky[500:520] = np.nan
    metadata = {"cutoff_hz": 0.5, "subject_stats": {"global": {"mean": 0.4, "std": 0.5}}}
    unbounded = smooth_and_rescale(spiky, cutoff_hz=0.5, stats={"mean": 0.4, "std": 0.5})
    assert np.nanmax(unbounded) > 1.0  # what the curve did before bounding
    values = postprocess(spiky, metadata, 3)
    assert np.nanmax(values) == 1.0 and np.nanmin(values) >= -1.0
    assert np.isnan(values[500:520]).all()  # unseen frames stay unseen
    assert label_range(metadata) == (-1.0, 1.0)
    assert np.nanmax(postprocess(spiky, {**metadata, "label_range": [-0.5, 0.8]}, 3)) == 0.8
    assert labels_range([np.array([-0.9, 0.3])]) == (-1.0, 1.0)
    assert labels_range([np.array([0.0, 5.0])]) == (-1.0, 5.0)
    assert np.isnan(bound(np.array([np.nan, 2.0]))).tolist() == [True, False]
    results = {name: ModalityResult(name=name, values=values.copy(), missing=np.isnan(values), status="ok")
               for name in ("audio", "body")}
    fused = fuse_results(results, {"audio": metadata, "body": metadata}, 3, settings=Settings(),
                         weights_spec="paper", cutoff_hz=0.5)
    assert fused.valence.max() <= 1.0 and fused.valence.min() >= -1.0
