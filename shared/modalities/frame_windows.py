"""Windows over per-frame features, shared by the face, landmarks and body modalities.

A vision window is ``length`` consecutive (or every ``step``-th) per-frame features ending at its label
frame (its *anchor*). Building every window of a video eagerly would repeat each frame ``length`` times
(a 16x128x128 float32 body window is 1 MB), so :class:`LazyWindows` keeps the small per-frame features once
(uint8 crops or 136 floats) plus an index matrix, and builds float32 windows only for the rows asked for.
Consumers take batches with ``windows[start:stop]`` or ``windows[indices]``.

Anchors: inference may predict every k-th frame only (``predict_every``); :func:`shared.windows.anchors_to_grid`
puts the anchor predictions back on the 25 fps grid. The outputs are low-passed far below 1 Hz afterwards,
so linear interpolation between anchors a few frames apart changes the final curve very little.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LazyWindows:
    """Array-like (n_windows, length, *feature_shape) float32 built on demand from per-frame features.

    Window ``i`` is ``(features[index[i]] - mean) / std``. ``mean``/``std`` broadcast over a feature
    (a scalar for crops, one value per series for landmarks), which is how per-video z-normalisation is
    applied without ever storing normalised copies.
    """

    def __init__(self, features: np.ndarray, index: np.ndarray, *, mean: float | np.ndarray = 0.0,
                 std: float | np.ndarray = 1.0) -> None:
        if index.ndim != 2:
            raise ValueError(f"index must be (n_windows, length), got shape {index.shape}")
        if index.size and (index.min() < 0 or index.max() >= len(features)):
            raise ValueError(f"index refers to rows outside the {len(features)} feature rows")
        self.features = features
        self.index = index.astype(np.int64, copy=False)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.index.shape[0], self.index.shape[1], *self.features.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the windows would take if materialised (not what this object holds)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.index.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        """Windows for an int, a slice or an integer/boolean array of window numbers (float32)."""
        rows = self.index[key]
        return ((self.features[rows].astype(np.float32) - self.mean) / self.std).astype(np.float32, copy=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All windows at once: fine for short clips and tests, not for long videos (use batches)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class FrameRows:
    """Per-frame features appended one frame at a time into one preallocated array.

    The decoder announces the frame count up front (``probe().n_frames``), so a video's features take one
    array of exactly that size: no list of small arrays and no ``np.stack`` copy, which would double the
    peak memory of a long video. Should more rows come than announced, the array grows (doubling).
    """

    def __init__(self, capacity: int, row_shape: tuple[int, ...], dtype: Any, *, fill: float = 0) -> None:
        self._rows = np.full((max(int(capacity), 1), *row_shape), fill, dtype=dtype)
        self._fill = fill
        self.count = 0

    def _next(self) -> int:
        if self.count == len(self._rows):
            self._rows = np.concatenate([self._rows, np.full_like(self._rows, self._fill)])
        self.count += 1
        return self.count - 1

    def append(self, row: np.ndarray) -> None:
        index = self._next()  # may replace self._rows: take the index first
        self._rows[index] = row

    def skip(self) -> None:
        """A frame without a feature of its own: its row keeps the fill value."""
        self._next()

    @property
    def array(self) -> np.ndarray:
        """The rows appended so far (a view, no copy)."""
        return self._rows[:self.count]


def predict_every(params: dict[str, Any]) -> int:
    """Anchor spacing k: ``params['predict_every']`` when given, else 1 (a window on every frame).

    Only inference thins windows out: :func:`shared.pipeline.run_modality` passes the
    ``EMPATHY_PREDICT_EVERY`` setting, while training (which never passes it) always gets every window,
    whatever the setting says: fewer training windows would silently change the model.
    """
    value = params.get("predict_every")
    k = int(value) if value is not None else 1
    if k < 1:
        raise ValueError(f"predict_every must be >= 1, got {k}")
    return k


def anchors(present: np.ndarray, every: int) -> np.ndarray:
    """Anchor positions: every ``every``-th present position of each present run, plus each run's last one.

    Including the last position of each run means a face that is visible for fewer than k frames still
    gets a prediction, and interpolation never has to reach across a run's end.
    """
    present = np.asarray(present, dtype=bool)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    padded = np.concatenate([[False], present, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    out: list[np.ndarray] = []
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        run = np.arange(start, stop, every)
        out.append(run if run[-1] == stop - 1 else np.append(run, stop - 1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def window_index(ends: np.ndarray, length: int, source: np.ndarray) -> np.ndarray:
    """(n, length) rows of the feature array: the ``length`` positions up to each end, padded at the start.

    ``source[p]`` says which stored feature row stands for position ``p`` (positions with no feature of their
    own point at the nearest earlier one: see :func:`hold_last`). Positions before 0 repeat position 0:
    constant padding with the first frame, so the first frames of a video get windows too.
    """
    offsets = np.arange(-length + 1, 1)
    positions = np.clip(ends[:, None] + offsets[None, :], 0, None)
    return source[positions]


def hold_last(present: np.ndarray) -> np.ndarray:
    """For each frame, the index of the last present frame at or before it (the first present one before that).

    Windows may reach over a few missing frames inside or before a visible run; those frames show the
    face as last seen rather than zeros. Needs at least one present frame.
    """
    present = np.asarray(present, dtype=bool)
    if not present.any():
        raise ValueError("hold_last needs at least one present frame")
    positions = np.where(present, np.arange(present.size), -1)
    held = np.maximum.accumulate(positions)
    return np.where(held < 0, np.flatnonzero(present)[0], held)


ZSCORE_CHUNK_BYTES = 4 * 2**20  # float64 bytes converted at a time by video_zscore


def video_zscore(features: np.ndarray, present: np.ndarray, *, per_feature: bool,
                 chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-video mean and std over the present frames: one scalar each, or one per feature column.

    Accumulated over chunks of frames (float64 sums), so a long video's uint8 crops are never converted
    to float all at once; applied lazily by :class:`LazyWindows`. A flat feature (std ~ 0) gets std 1 so it
    stays finite instead of blowing noise up. ``chunk`` (frames) defaults to :data:`ZSCORE_CHUNK_BYTES` worth
    of float64: a fixed number of frames would make the peak depend on the feature size (1024 body crops of
    128x128 are 134 MB as float64, twice that with their squares).
    """
    rows = np.flatnonzero(np.asarray(present, dtype=bool))
    if rows.size == 0:
        raise ValueError("video_zscore needs at least one present frame")
    if chunk is None:
        chunk = max(1, ZSCORE_CHUNK_BYTES // (8 * max(1, int(np.prod(features.shape[1:], dtype=np.int64)))))
    total = total_sq = 0.0
    count = 0
    for start in range(0, rows.size, chunk):
        block = features[rows[start:start + chunk]].astype(np.float64)
        block = block.reshape(block.shape[0], -1) if not per_feature else block
        total = total + (block.sum(axis=0) if per_feature else block.sum())
        total_sq = total_sq + ((block ** 2).sum(axis=0) if per_feature else (block ** 2).sum())
        count += block.shape[0] if per_feature else block.size
    mean = np.asarray(total) / count
    std = np.sqrt(np.maximum(np.asarray(total_sq) / count - mean ** 2, 0.0))
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)
