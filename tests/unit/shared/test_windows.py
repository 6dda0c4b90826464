"""Window starts, stitching back onto the frame grid, front padding and anchor interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from shared.windows import anchors_to_grid, pad_end, pad_front, stitch, window_starts


def test_window_starts_cover_the_sequence_and_end_exactly_at_n() -> None:
    np.testing.assert_array_equal(window_starts(10, 4, 3), [0, 3, 6])
    np.testing.assert_array_equal(window_starts(11, 4, 3), [0, 3, 6, 7])
    for n in range(5, 60):
        for length in (1, 4, 5):
            for stride in (1, 2, 3, 4):
                starts = window_starts(n, length, stride)
                assert starts[0] == 0
                assert starts[-1] + length == n
                assert np.all(np.diff(starts) >= 1)
                assert np.all(np.diff(starts) <= stride)


def test_window_starts_for_a_sequence_shorter_than_one_window() -> None:
    np.testing.assert_array_equal(window_starts(3, 8, 2), [0])
    with pytest.raises(ValueError):
        window_starts(0, 8, 2)
    with pytest.raises(ValueError):
        window_starts(10, 8, 0)


def test_stitch_averages_overlaps_and_returns_exact_frame_count() -> None:
    starts = window_starts(11, 4, 3)  # [0, 3, 6, 7]
    preds = np.array([[1.0] * 4, [2.0] * 4, [3.0] * 4, [5.0] * 4])
    out = stitch(preds, starts, 11)
    expected = [1, 1, 1, 1.5, 2, 2, 2.5, 4, 4, 4, 5]  # frames 7-9: windows 3 and 5; frame 6: 2 and 3
    assert out.shape == (11,)
    np.testing.assert_allclose(out, expected)


def test_stitch_of_sliding_copies_recovers_the_signal() -> None:
    signal = np.sin(np.arange(200) / 7.0)
    starts = window_starts(200, 30, 7)
    preds = np.stack([signal[s : s + 30] for s in starts])
    np.testing.assert_allclose(stitch(preds, starts, 200), signal)


def test_stitch_drops_padding_past_the_end_and_leaves_uncovered_frames_nan() -> None:
    out = stitch(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]), window_starts(3, 5, 1), 3)
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
    gap = stitch(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([0, 4]), 6)
    assert np.isnan(gap[[2, 3]]).all()
    with pytest.raises(ValueError):
        stitch(np.zeros((2, 3)), np.array([0]), 5)


def test_pad_front_and_pad_end_repeat_the_edge_row_up_to_length() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = pad_front(x, 5)
    assert out.shape == (5, 2)
    np.testing.assert_array_equal(out[:3], [[1.0, 2.0]] * 3)
    np.testing.assert_array_equal(out[3:], x)
    np.testing.assert_array_equal(pad_end(np.array([7, 8]), 4), [7, 8, 8, 8])
    np.testing.assert_array_equal(pad_end(np.array([7.0, 8.0]), 4, value=0.0), [7, 8, 0, 0])
    np.testing.assert_array_equal(pad_front(x, 1), x)  # already long enough: unchanged
    with pytest.raises(ValueError):
        pad_front(np.zeros((0, 2)), 3)


def test_anchors_to_grid_is_linear_between_anchors_and_holds_the_edges() -> None:
    out = anchors_to_grid(np.array([0.0, 4.0, 0.0]), np.array([2, 6, 10]), 13)
    np.testing.assert_allclose(out, [0, 0, 0, 1, 2, 3, 4, 3, 2, 1, 0, 0, 0])
    column = anchors_to_grid(np.array([[1.0], [3.0]]), np.array([0, 2]), 4)  # a model's (n, 1) output
    np.testing.assert_allclose(column, [1, 2, 3, 3])


def test_anchors_to_grid_marks_missing_frames_nan_whatever_the_edge_rule_gave() -> None:
    missing = np.zeros(13, dtype=bool)
    missing[[0, 1, 4, 12]] = True
    out = anchors_to_grid(np.array([0.0, 4.0, 0.0]), np.array([2, 6, 10]), 13, missing)
    assert np.isnan(out[missing]).all()
    np.testing.assert_allclose(out[~missing], [0, 1, 3, 4, 3, 2, 1, 0, 0])


def test_anchors_to_grid_does_not_bridge_nan_predictions() -> None:
    out = anchors_to_grid(np.array([0.0, 4.0, np.nan, 0.0]), np.array([0, 4, 8, 12]), 13)
    np.testing.assert_allclose(out[:5], [0, 1, 2, 3, 4])
    assert np.isnan(out[5:12]).all()
    assert out[12] == 0.0


def test_anchors_to_grid_rejects_bad_anchors_and_handles_none() -> None:
    assert np.isnan(anchors_to_grid(np.zeros(0), np.zeros(0, dtype=np.int64), 5)).all()
    assert anchors_to_grid(np.ones(1), np.array([0]), 0).shape == (0,)
    with pytest.raises(ValueError, match="strictly increasing"):
        anchors_to_grid(np.array([0.0, 1.0]), np.array([3, 1]), 5)
    with pytest.raises(ValueError, match="2 predictions for 3 anchors"):
        anchors_to_grid(np.zeros(2), np.array([0, 1, 2]), 5)
