"""Training batches over windows: every window once per epoch, or every k-th with the offset moving (stride)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.modalities.frame_windows import LazyWindows
from training.batches import WindowBatches


def _epoch_rows(batches: WindowBatches) -> np.ndarray:
    rows = np.concatenate([targets for _, targets in (batches[i] for i in range(len(batches)))])
    batches.on_epoch_end()
    return rows.astype(np.int64)


def test_without_a_stride_an_epoch_fits_every_window_once() -> None:
    targets = np.arange(100, dtype=np.float32)  # each target names its window
    batches = WindowBatches({"x": np.arange(100)[:, None]}, targets, 16, seed=1)
    for _ in range(2):
        assert sorted(_epoch_rows(batches)) == list(range(100))


def test_a_stride_fits_every_kth_window_and_moves_its_offset_so_k_epochs_cover_all() -> None:
    features = np.arange(103, dtype=np.uint8)[:, None]  # lazy windows, as the vision modalities give
    windows = LazyWindows(features, np.arange(103)[:, None])
    batches = WindowBatches({"x": windows}, np.arange(103, dtype=np.float32), 8, seed=0, stride=3)
    epochs = [_epoch_rows(batches) for _ in range(3)]
    assert [len(e) for e in epochs] == [34, 34, 34]  # the same batch count every epoch
    assert len(batches) == 5
    for offset, rows in enumerate(epochs):
        assert set(rows % 3) == {offset}
        assert len(set(rows)) == len(rows)
    assert len(set(np.concatenate(epochs))) == 102  # all but one window (103 = 3 x 34 + 1) in 3 epochs
    x, y = batches[0]
    assert np.array_equal(x["x"][:, 0, 0], y)  # inputs and targets stay paired


def test_a_stride_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        WindowBatches({"x": np.zeros((4, 1))}, np.zeros(4), 2, stride=0)
