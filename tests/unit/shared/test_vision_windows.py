"""Lazy vision windows, anchors, padding and interpolation (shared.modalities.frame_windows, training.batches)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.crops import compose, parse_box, parse_subject_boxes
from shared.modalities.base import Windows, get_modality
from shared.modalities.frame_windows import LazyWindows, anchors, hold_last, video_zscore, window_index
from training.batches import ConcatenatedWindows, concat_windows, is_lazy


def test_anchors_cover_each_visible_run_and_end_on_its_last_frame() -> None:
    present = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1], dtype=bool)
    assert anchors(present, 1).tolist() == np.flatnonzero(present).tolist()
    assert anchors(present, 3).tolist() == [0, 3, 6, 9, 10, 12]
    assert anchors(np.zeros(5, dtype=bool), 2).size == 0


def test_hold_last_points_missing_frames_at_the_last_visible_one() -> None:
    present = np.array([0, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    assert hold_last(present).tolist() == [2, 2, 2, 3, 3, 3, 6, 6]
    with pytest.raises(ValueError):
        hold_last(np.zeros(3, dtype=bool))


def test_window_index_pads_the_start_with_the_first_frame_and_ends_at_the_label_frame() -> None:
    rows = window_index(np.array([0, 3, 9]), 4, np.arange(10))
    assert rows.tolist() == [[0, 0, 0, 0], [0, 1, 2, 3], [6, 7, 8, 9]]


def test_lazy_windows_equal_eager_normalised_windows() -> None:
    rng = np.random.default_rng(0)
    features = rng.integers(0, 256, (30, 6, 6), dtype=np.uint8)
    ends = np.arange(30)
    index = window_index(ends, 5, np.arange(30))
    mean, std = video_zscore(features, np.ones(30, dtype=bool), per_feature=False)
    lazy = LazyWindows(features, index, mean=mean, std=std)
    eager = (features[index].astype(np.float64) - features.mean()) / features.std()
    assert lazy.shape == (30, 5, 6, 6) and lazy.dtype == np.float32 and len(lazy) == 30
    np.testing.assert_allclose(lazy[:], eager, atol=1e-4)
    np.testing.assert_allclose(lazy[[3, 17]], eager[[3, 17]], atol=1e-4)
    np.testing.assert_allclose(lazy[7], eager[7], atol=1e-4)
    np.testing.assert_allclose(np.asarray(lazy), eager, atol=1e-4)


def test_video_zscore_per_feature_matches_numpy_over_present_rows_only() -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(100.0, 5.0, (2500, 136)).astype(np.float32)
    present = rng.random(2500) > 0.2
    points[~present] = np.nan
    mean, std = video_zscore(points, present, per_feature=True, chunk=300)
    np.testing.assert_allclose(mean, points[present].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, points[present].std(axis=0), rtol=1e-3)
    flat_mean, flat_std = video_zscore(np.full((4, 3), 7.0), np.ones(4, dtype=bool), per_feature=True)
    assert flat_std.tolist() == [1.0, 1.0, 1.0]  # a constant series stays finite


@pytest.mark.parametrize("name", ["face", "landmarks"])
def test_tracked_modalities_put_anchors_on_the_grid_nan_only_where_no_face(name: str) -> None:
    """Face and landmarks anchor each visible run's first and last frame, so the edge rule of
    ``anchors_to_grid`` never fills a frame without a face, and every frame with one gets a value."""
    present = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0], dtype=bool)
    ends = anchors(present, 3)
    windows = Windows(inputs={}, label_frames=ends, n_frames=present.size, missing=~present)
    out = get_modality(name).to_frames(np.arange(ends.size, dtype=np.float64)[:, None], windows)
    assert np.isfinite(out[present]).all() and np.isnan(out[~present]).all()
    np.testing.assert_allclose(out[2:9], [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    np.testing.assert_allclose(out[11:14], [3, 3.5, 4])  # a new run: no bridge from the previous one


def test_body_holds_its_last_anchor_over_the_frames_after_it() -> None:
    """The body anchors every 5th frame: the frames after its last kept one hold that prediction."""
    windows = Windows(inputs={}, label_frames=np.array([0, 5, 10]), n_frames=13)
    out = get_modality("body").to_frames(np.array([[0.0], [1.0], [3.0]]), windows)
    np.testing.assert_allclose(out, [0, 0.2, 0.4, 0.6, 0.8, 1, 1.4, 1.8, 2.2, 2.6, 3, 3, 3])


def test_concatenated_lazy_windows_gather_rows_across_clips_in_order() -> None:
    rng = np.random.default_rng(2)
    parts = []
    for n in (7, 5):
        features = rng.normal(size=(n, 4)).astype(np.float32)
        parts.append(LazyWindows(features, window_index(np.arange(n), 3, np.arange(n))))
    joined = concat_windows(parts)
    assert isinstance(joined, ConcatenatedWindows) and joined.shape == (12, 3, 4)
    eager = np.concatenate([p[:] for p in parts])
    rows = np.array([11, 0, 6, 7, 3])
    np.testing.assert_array_equal(joined[rows], eager[rows])
    np.testing.assert_array_equal(joined[5:9], eager[5:9])
    assert is_lazy({"x": joined}) and not is_lazy({"x": eager})
    assert isinstance(concat_windows([eager, eager]), np.ndarray)


def test_crop_boxes_parse_per_subject_and_compose_inside_the_listener_crop() -> None:
    boxes = parse_subject_boxes("1=0.1,0,0.9,1;*=0,0,1,0.5")
    assert boxes["1"] == (0.1, 0.0, 0.9, 1.0) and boxes["*"] == (0.0, 0.0, 1.0, 0.5)
    assert parse_subject_boxes("0.2,0.2,0.8,0.8") == {"*": (0.2, 0.2, 0.8, 0.8)}
    assert compose((0.5, 0.0, 1.0, 1.0), (0.2, 0.1, 0.6, 0.9)) == pytest.approx((0.6, 0.1, 0.8, 0.9))
    with pytest.raises(ValueError):
        parse_box("0.5,0,0.4,1")
