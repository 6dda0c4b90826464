"""Training and prediction over lazy windows, batch by batch, so memory stays O(batch) per step.

A modality may hand out ``Windows.inputs`` values that are not arrays but lazy array-likes
(:class:`shared.modalities.frame_windows.LazyWindows`: ``shape``, ``dtype``, ``len`` and ``[rows]`` returning
an ndarray). The full-body windows are 1 MB each (16x128x128 float32): a real data set's windows cannot be
stacked in memory, but their 128x128 uint8 frames can. The trainer concatenates clips lazily
(:class:`ConcatenatedWindows`), fits from :class:`WindowBatches` and predicts with :func:`predict_in_batches`.
Array inputs (audio, text) keep the plain ``np.concatenate`` / ``model.fit(x, y)`` path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np


def is_lazy(inputs: Mapping[str, Any]) -> bool:
    """True when some input is an array-like that builds its windows on demand."""
    return any(not isinstance(value, np.ndarray) for value in inputs.values())


class ConcatenatedWindows:
    """Several window array-likes (lazy or arrays) seen as one along the first axis, without copying."""

    def __init__(self, parts: Sequence[Any]) -> None:
        if not parts:
            raise ValueError("nothing to concatenate")
        self.parts = list(parts)
        self.offsets = np.cumsum([0, *[len(p) for p in self.parts]])
        self.dtype = np.dtype(self.parts[0].dtype)
        tail = tuple(self.parts[0].shape[1:])
        if any(tuple(p.shape[1:]) != tail for p in self.parts):
            raise ValueError("windows of different shapes cannot be concatenated")
        self._tail = tail

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.offsets[-1]), *self._tail)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: Any) -> np.ndarray:
        """Rows (int, slice or integer array) gathered part by part, returned in the order asked for."""
        rows = np.arange(len(self))[key]
        scalar = np.ndim(rows) == 0
        rows = np.atleast_1d(rows)
        out = np.empty((rows.size, *self._tail), dtype=self.dtype)
        part_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for part in np.unique(part_of):
            where = np.flatnonzero(part_of == part)
            out[where] = np.asarray(self.parts[part][rows[where] - self.offsets[part]], dtype=self.dtype)
        return out[0] if scalar else out


def concat_windows(parts: Sequence[Any]) -> Any:
    """``np.concatenate`` for arrays; a lazy :class:`ConcatenatedWindows` as soon as one part is lazy."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return ConcatenatedWindows(parts)


class WindowBatches(keras.utils.PyDataset):
    """Shuffled (inputs, targets) batches built on demand from array-like inputs; reshuffled every epoch.

    ``stride`` k > 1 trains each epoch on every k-th window only, the offset moving by one each epoch, so k
    epochs see every window once. Vision windows of neighbouring frames overlap in all but one frame (a face
    window is 10 frames, a landmarks window 25): an epoch over all of them repeats nearly the same example k
    times for k times the cost. Training only; inference always predicts the windows it is asked for.
    """

    def __init__(self, inputs: Mapping[str, Any], targets: np.ndarray, batch_size: int, *, seed: int = 0,
                 stride: int = 1) -> None:
        super().__init__()
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.inputs = dict(inputs)
        self.targets = targets
        self.batch_size = int(batch_size)
        self.stride = int(stride)
        self._epoch = 0
        self._rng = np.random.default_rng(seed)
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        # the same number of windows every epoch (Keras may keep the first epoch's batch count)
        rows = np.arange(self._epoch % self.stride, len(self.targets), self.stride)[:len(self.targets) // self.stride]
        return self._rng.permutation(rows)

    def __len__(self) -> int:
        return int(np.ceil(len(self._order) / self.batch_size))

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        # Sorted rows read each clip's frames in order (cheaper gathers); the batch's content is what counts.
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        return {name: np.asarray(value[rows]) for name, value in self.inputs.items()}, self.targets[rows]

    def on_epoch_end(self) -> None:
        self._epoch += 1
        self._order = self._epoch_order()


def predict_in_batches(model: keras.Model, inputs: Mapping[str, Any], batch_size: int) -> np.ndarray:
    """``model`` on every window, one batch of windows built at a time (inference mode)."""
    n = len(next(iter(inputs.values())))
    outputs = []
    for start in range(0, n, batch_size):
        batch = {name: np.asarray(value[start:start + batch_size]) for name, value in inputs.items()}
        outputs.append(np.asarray(model.predict_on_batch(batch)))
    return np.concatenate(outputs) if outputs else np.zeros((0, *model.output_shape[1:]), dtype=np.float32)
