"""Cutting a video's frame sequence into model windows and putting window predictions back on the frame grid.

Windows always stay inside one video and always reach its last frame: the final window is shifted to end
exactly at ``n`` rather than being dropped or running past the end (the authors' windows crossed videos).
"""

from __future__ import annotations

import numpy as np


def window_starts(n: int, length: int, stride: int) -> np.ndarray:
    """Start indices ``0, stride, 2*stride, ...`` plus, if needed, ``n - length`` so the last window ends at ``n``.

    Every index in ``[0, n)`` is covered when ``stride <= length``. If ``n < length`` there is one window
    starting at 0 that runs past the end: the caller pads the input to ``length`` (:func:`pad_end`, e.g.
    silence for audio) and :func:`stitch` discards the predictions beyond ``n``.
    """
    if n < 1 or length < 1 or stride < 1:
        raise ValueError(f"n, length and stride must be >= 1, got n={n}, length={length}, stride={stride}")
    if n <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - length + 1, stride, dtype=np.int64)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts


def stitch(preds: np.ndarray, starts: np.ndarray, n_frames: int) -> np.ndarray:
    """Average overlapping window predictions per frame; returns exactly ``n_frames`` values.

    ``preds[i, j]`` predicts frame ``starts[i] + j``. Positions at or beyond ``n_frames`` (padding) are
    ignored. A frame no window covers (a stride longer than the window) is NaN, the system's "missing".
    """
    preds = np.asarray(preds, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    if preds.ndim != 2:
        raise ValueError(f"preds must be (n_windows, length), got shape {preds.shape}")
    if starts.shape != (preds.shape[0],):
        raise ValueError(f"{starts.shape[0] if starts.ndim else 0} starts for {preds.shape[0]} windows")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if starts.size and starts.min() < 0:
        raise ValueError("window starts must be >= 0")
    frames = starts[:, None] + np.arange(preds.shape[1])[None, :]
    keep = frames < n_frames
    total = np.bincount(frames[keep], weights=preds[keep], minlength=n_frames)
    count = np.bincount(frames[keep], minlength=n_frames)
    out = np.full(n_frames, np.nan)
    covered = count > 0
    out[covered] = total[covered] / count[covered]
    return out


def pad_front(x: np.ndarray, length: int, value: float | None = None) -> np.ndarray:
    """Pad the first axis at the start up to ``length`` with ``value``, or with the first row if None.

    This is the paper's "constant-value padding" for the first frames of a sequence whose windows are
    labelled with their last frame; input already that long is returned unchanged.
    """
    return _pad(np.asarray(x), length, value, front=True)


def pad_end(x: np.ndarray, length: int, value: float | None = None) -> np.ndarray:
    """Pad the first axis at the end up to ``length`` with ``value``, or with the last row if None."""
    return _pad(np.asarray(x), length, value, front=False)


def _pad(x: np.ndarray, length: int, value: float | None, *, front: bool) -> np.ndarray:
    if x.ndim == 0:
        raise ValueError("cannot pad a scalar")
    missing = length - x.shape[0]
    if missing <= 0:
        return x
    if value is None:
        if x.shape[0] == 0:
            raise ValueError("cannot repeat the edge of an empty array; give a value")
        edge = x[:1] if front else x[-1:]
        filler = np.repeat(edge, missing, axis=0)
    else:
        filler = np.full((missing, *x.shape[1:]), value, dtype=x.dtype)
    return np.concatenate([filler, x] if front else [x, filler], axis=0)


def anchors_to_grid(values: np.ndarray, anchor_frames: np.ndarray, n_frames: int,
                    missing: np.ndarray | None = None) -> np.ndarray:
    """Predictions made on some frames (anchors) -> (n_frames,) float64 on the 25 fps grid.

    The one edge rule, for every modality that predicts on anchors (face, landmarks, body):

    - between two anchors the curve is linear (NaN next to an anchor whose value is NaN: nothing is
      invented across a gap in the predictions);
    - before the first anchor and after the last, the nearest anchor's value is held;
    - frames marked ``missing`` (the modality could not see them) are NaN, whatever the rules above gave.

    Holding at the edges only ever fills frames the modality saw but did not anchor (the body's anchors are
    every 5th frame, so up to 4 visible frames follow its last one): face and landmarks anchor the first and
    last frame of every visible run, so whatever lies beyond their anchors is missing. ``values`` may carry a
    trailing axis of 1 (a model's (n, 1) output); anchors must be strictly increasing frame indices.
    """
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    frames = np.asarray(anchor_frames, dtype=np.int64)
    if frames.ndim != 1 or frames.shape != vals.shape:
        raise ValueError(f"{vals.size} predictions for {frames.size} anchors (anchors must be 1-D)")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    out = np.full(n_frames, np.nan)
    if frames.size and n_frames:
        if np.any(np.diff(frames) <= 0):
            raise ValueError("anchor_frames must be strictly increasing")
        grid = np.arange(n_frames)
        left = np.searchsorted(frames, grid, side="right") - 1  # the last anchor at or before each frame
        inside = (left >= 0) & (left < frames.size - 1)
        lo = left[inside]
        weight = (grid[inside] - frames[lo]) / (frames[lo + 1] - frames[lo])
        out[inside] = vals[lo] + weight * (vals[lo + 1] - vals[lo])
        out[grid < frames[0]] = vals[0]
        out[grid >= frames[-1]] = vals[-1]
        on_grid = (frames >= 0) & (frames < n_frames)
        out[frames[on_grid]] = vals[on_grid]  # an anchor keeps its own value, even beside a NaN one
    if missing is not None:
        out[np.asarray(missing, dtype=bool)] = np.nan
    return out
