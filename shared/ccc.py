"""The challenge's evaluation metric and the paper's per-subject re-scaling.

:func:`ccc` reproduces the OMG-Empathy evaluation script so that numbers reported here are comparable with
the paper's: population means/variances (numpy defaults), Pearson's rho with NaN (a constant sequence)
replaced by 0, and ``2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2)``.
"""

from __future__ import annotations

import numpy as np


def ccc_many(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """CCC of each row (last axis = time) of two equally shaped arrays; the one implementation of the metric.

    A constant row has an undefined Pearson rho, which the challenge script sets to 0, so its CCC is 0
    (this includes two identical constant rows, where the formula itself would be 0/0).
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {t.shape} vs {p.shape}")
    if t.ndim == 0 or t.shape[-1] == 0:
        raise ValueError("CCC needs at least one value per sequence")
    if np.isnan(t).any() or np.isnan(p).any():
        raise ValueError("CCC input contains NaN; drop or fill missing frames first")
    mt, mp = t.mean(axis=-1), p.mean(axis=-1)
    st, sp = t.std(axis=-1), p.std(axis=-1)
    cov = ((t - mt[..., None]) * (p - mp[..., None])).mean(axis=-1)
    # scipy's pearsonr (the script's rho) is NaN -> 0 for a row of exactly equal values, even where the float
    # mean leaves a std of ~1e-17 (a constant 0.1 row): without this a constant equal to a constant scores 1.
    constant = (t == t[..., :1]).all(axis=-1) | (p == p[..., :1]).all(axis=-1)
    denom_rho = np.where(constant, 0.0, st * sp)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denom_rho > 0, cov / np.where(denom_rho > 0, denom_rho, 1.0), 0.0)
        denom = st**2 + sp**2 + (mt - mp) ** 2
        out = np.where(denom > 0, 2.0 * rho * st * sp / np.where(denom > 0, denom, 1.0), 0.0)
    return out


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Concordance correlation coefficient of one video's ground truth and prediction (challenge definition)."""
    t = np.asarray(y_true)
    if t.ndim != 1:
        raise ValueError(f"ccc expects 1-D sequences, got shape {t.shape}; use ccc_many for batches")
    return float(ccc_many(t, y_pred))


def rescale(pred: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Give a prediction the subject's training mean and std: z-score over the video, then ``* std + mean``.

    CCC penalises a wrong mean or scale, and models trained with a correlation-like loss drift in both;
    the paper matches each subject's training labels instead. A constant prediction carries no shape, so it
    becomes ``mean``. NaN frames (unseen by a modality) are ignored in the statistics and stay NaN.
    """
    x = np.asarray(pred, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"rescale expects a 1-D curve, got shape {x.shape}")
    if not np.isfinite(mean) or not np.isfinite(std) or std < 0:
        raise ValueError(f"rescale needs a finite mean and a finite std >= 0, got mean={mean}, std={std}")
    valid = ~np.isnan(x)
    out = np.full(x.shape, np.nan)
    if not valid.any():
        return out
    mu, sigma = x[valid].mean(), x[valid].std()
    if sigma == 0:
        out[valid] = mean
    else:
        out[valid] = (x[valid] - mu) / sigma * std + mean
    return out
