"""Decoding ahead in a thread and feeding several consumers (shared.modalities.frame_stream), FrameRows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.modalities.base import Windows
from shared.modalities.frame_stream import feed_together, prefetched
from shared.modalities.frame_windows import FrameRows
from tests.ensemble_support import write_tiny_video


def _frames(n: int, *, fail_at: int | None = None, closed: list[bool] | None = None) -> Iterator[np.ndarray]:
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"corrupt at frame {i}")
            yield np.full((4, 4), i, dtype=np.uint8)
    finally:
        if closed is not None:
            closed.append(True)


def _decode_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "decode")


def test_prefetched_yields_the_same_frames_in_order() -> None:
    got = [int(frame[0, 0]) for frame in prefetched(_frames(100), depth=3)]
    assert got == list(range(100))


def test_prefetched_raises_the_decoding_error_after_the_frames_before_it() -> None:
    seen = []
    with pytest.raises(ValueError, match="corrupt at frame 7"):
        for frame in prefetched(_frames(20, fail_at=7), depth=2):
            seen.append(int(frame[0, 0]))
    assert seen == list(range(7))
    assert _decode_threads() == 0


def test_stopping_early_stops_the_decoder_and_closes_the_source() -> None:
    closed: list[bool] = []
    frames = prefetched(_frames(10_000, closed=closed), depth=2)
    for i, _ in enumerate(frames):
        if i == 5:
            break
    frames.close()
    assert closed == [True] and _decode_threads() == 0


class _Counter:
    """A consumer that counts frames (and fails at a given one)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.count = 0

    def feed(self, grey: np.ndarray) -> None:
        assert not grey.flags.writeable  # shared frames are read-only
        if self.count == self.fail_at:
            raise RuntimeError("tracker broke")
        self.count += 1

    def finish(self, video: Path | str = "") -> Windows:
        return Windows(inputs={}, label_frames=np.zeros(0, dtype=np.int64), n_frames=self.count)


def test_feed_together_gives_every_consumer_every_frame_and_keeps_failures_apart(tmp_path: Path) -> None:
    video = write_tiny_video(tmp_path / "clip.mp4", seconds=2.0)
    outcomes = feed_together(video, {"a": _Counter(), "b": _Counter(fail_at=10), "c": _Counter()})
    assert outcomes["a"].windows.n_frames == 50 and outcomes["c"].windows.n_frames == 50
    assert outcomes["b"].windows is None and "tracker broke" in str(outcomes["b"].error)


def test_frame_rows_fill_preallocated_rows_and_grow_when_more_come() -> None:
    rows = FrameRows(2, (3,), np.float32, fill=np.nan)
    rows.append(np.array([1, 2, 3]))
    rows.skip()
    rows.append(np.array([4, 5, 6]))  # one more than announced
    assert rows.count == 3 and rows.array.shape == (3, 3)
    np.testing.assert_array_equal(rows.array[0], [1, 2, 3])
    assert np.isnan(rows.array[1]).all()
    np.testing.assert_array_equal(rows.array[2], [4, 5, 6])
