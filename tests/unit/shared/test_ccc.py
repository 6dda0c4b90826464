"""CCC as the challenge computes it, and the per-subject re-scaling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from shared.ccc import ccc, ccc_many, rescale


def reference_ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The OMG-Empathy evaluation script's formula, written out independently with scipy's Pearson r."""
    rho, _ = stats.pearsonr(y_pred, y_true)
    sx, sy = np.std(y_pred), np.std(y_true)
    return 2 * rho * sx * sy / (sx**2 + sy**2 + (np.mean(y_pred) - np.mean(y_true)) ** 2)


def test_ccc_matches_the_challenge_formula_on_random_data() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        truth = rng.normal(0.1, 0.3, 500)
        pred = 0.6 * truth + rng.normal(0.2, 0.2, 500)
        assert ccc(truth, pred) == pytest.approx(reference_ccc(truth, pred), abs=1e-12)


def test_ccc_is_one_for_identical_and_minus_one_for_negated() -> None:
    truth = np.sin(np.linspace(0, 6, 300)) + 0.3
    assert ccc(truth, truth) == pytest.approx(1.0)
    centred = truth - truth.mean()  # -1 needs the negated copy to share the mean, i.e. a zero mean
    assert ccc(centred, -centred) == pytest.approx(-1.0)
    assert ccc(truth, -truth) > -1.0 + 1e-3


def test_ccc_penalises_shift_and_scale_unlike_pearson() -> None:
    truth = np.sin(np.linspace(0, 6, 300))
    shifted = ccc(truth, truth + 0.5)
    scaled = ccc(truth, 2.0 * truth)
    assert shifted < 0.9
    assert scaled < 0.9
    assert shifted == pytest.approx(reference_ccc(truth, truth + 0.5))


def test_ccc_of_a_constant_prediction_is_zero() -> None:
    truth = np.linspace(-1, 1, 100)
    assert ccc(truth, np.full(100, 0.3)) == 0.0


def test_ccc_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="differ"):
        ccc(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        ccc(np.array([0.0, np.nan, 1.0]), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="at least one"):
        ccc(np.zeros(0), np.zeros(0))


def test_rescale_gives_the_subject_mean_and_std_and_keeps_the_shape() -> None:
    rng = np.random.default_rng(1)
    pred = rng.normal(3.0, 5.0, 1000)
    out = rescale(pred, mean=0.2, std=0.1)
    assert out.mean() == pytest.approx(0.2)
    assert out.std() == pytest.approx(0.1)
    assert np.corrcoef(pred, out)[0, 1] == pytest.approx(1.0)


def test_rescale_of_a_constant_prediction_is_the_mean() -> None:
    np.testing.assert_array_equal(rescale(np.full(50, 7.0), mean=0.25, std=0.3), np.full(50, 0.25))


def test_rescale_ignores_and_keeps_nan() -> None:
    pred = np.array([1.0, np.nan, 3.0, 5.0, np.nan])
    out = rescale(pred, mean=1.0, std=2.0)
    assert np.isnan(out[[1, 4]]).all()
    valid = out[[0, 2, 3]]
    assert valid.mean() == pytest.approx(1.0)
    assert valid.std() == pytest.approx(2.0)
    assert np.isnan(rescale(np.full(4, np.nan), 0.0, 1.0)).all()


def test_ccc_many_scores_each_row_like_ccc() -> None:
    rng = np.random.default_rng(6)
    truth = rng.normal(size=(4, 200))
    pred = truth * np.array([[1.0], [-0.5], [0.0], [2.0]]) + rng.normal(0, 0.3, (4, 200))
    np.testing.assert_allclose(ccc_many(truth, pred), [reference_ccc(t, p) for t, p in zip(truth, pred, strict=True)])


def test_ccc_of_a_constant_equal_to_a_constant_is_zero_as_in_the_official_script() -> None:
    truth = np.full(300, 0.1)  # a float mean leaves a std of ~1e-17 here
    assert ccc(truth, truth.copy()) == 0.0
