"""dlib detection, tracking, landmarks and the no-face behaviour on the real astronaut photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from shared.face_tracking import (
    CARRIED,
    DETECTED,
    MISSING,
    FaceTracker,
    TrackerConfig,
    crop_box,
    detect_faces,
    fit_landmarks,
    iou,
)

HEIGHT, WIDTH = 480, 720
SIZE = 360  # the astronaut photo scaled to 360x360 on the canvas: a ~60 px face


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def canvas(photo: np.ndarray | None, x: int = 0, y: int = 0) -> np.ndarray:
    """A flat grey frame with the photo pasted at (x, y), or without any face."""
    frame = np.full((HEIGHT, WIDTH), 90, dtype=np.uint8)
    if photo is not None:
        frame[y:y + SIZE, x:x + SIZE] = photo
    return frame


def test_landmarks_on_the_astronaut_land_on_her_face() -> None:
    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    boxes = detect_faces(grey)
    assert len(boxes) >= 1
    box = boxes[0]
    assert 150 < (box[0] + box[2]) / 2 < 300 and 60 < (box[1] + box[3]) / 2 < 200  # her face, not the patch
    points = fit_landmarks(grey, box)
    assert points.shape == (68, 2)
    slack = 0.1 * (box[2] - box[0])  # the jaw line may touch the box's edge
    assert (points[:, 0] >= box[0] - slack).all() and (points[:, 0] <= box[2] + slack).all()
    assert (points[:, 1] >= box[1] - slack).all() and (points[:, 1] <= box[3] + slack).all()
    eyes_y = points[36:48, 1].mean()
    nose_tip_y = points[33, 1]
    mouth_y = points[48:68, 1].mean()
    chin_y = points[8, 1]
    assert eyes_y < nose_tip_y < mouth_y < chin_y
    assert points[36:42, 0].mean() < points[30, 0] < points[42:48, 0].mean()  # one eye either side of the nose


def test_detection_on_a_down_scaled_frame_finds_the_same_box(photo: np.ndarray) -> None:
    frame = canvas(photo, 300, 100)
    full = detect_faces(frame, detect_width=WIDTH)
    big = cv2.resize(frame, (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_LINEAR)
    # faces of 160 px may be shrunk to HOG's 80: HOG on the 720-wide copy, boxes scaled back
    scaled = detect_faces(big, detect_width=WIDTH, min_face_px=160) / 2.0
    assert len(full) == len(scaled) == 1
    assert iou(full[0], scaled[0]) > 0.8


def test_tracker_follows_a_moving_face_with_sparse_detections(photo: np.ndarray) -> None:
    start = detect_faces(canvas(photo, 40, 20), detect_width=WIDTH)[0]
    for landmarks in (False, True):
        tracker = FaceTracker(TrackerConfig(detect_every=10, detect_width=WIDTH), landmarks=landmarks)
        overlaps = []
        for i in range(60):
            seen = tracker.update(canvas(photo, 40 + 2 * i, 20 + i))
            assert not seen.missing
            truth = start + np.array([2 * i, i, 2 * i, i])  # where the face really is: the photo moved
            overlaps.append(iou(seen.box, truth))
            if landmarks:
                assert seen.landmarks is not None and seen.landmarks.shape == (68, 2)
        assert tracker.detections <= 60 // 10 + 3  # ~one HOG per 10 frames, a few retries at most
        # The landmarks follow the face every frame (measured mean IoU 0.85); a face-mode box only moves at
        # detections, and smoothing makes it lag a face moving 2 px a frame (0.58).
        assert np.mean(overlaps) > (0.8 if landmarks else 0.5), (landmarks, np.round(overlaps, 2))


def test_landmark_tracker_redetects_at_once_when_the_face_jumps(photo: np.ndarray) -> None:
    tracker = FaceTracker(TrackerConfig(detect_every=10), landmarks=True)
    for _ in range(13):
        tracker.update(canvas(photo, 0, 0))
    jumped = canvas(photo, 340, 110)
    seen = tracker.update(jumped)  # frame 13: not a scheduled detection
    assert seen.status == DETECTED
    assert iou(seen.box, detect_faces(jumped)[0]) > 0.9


@pytest.mark.parametrize("landmarks", [False, True])
def test_a_face_that_leaves_is_carried_for_max_gap_frames_then_reported_missing(photo: np.ndarray,
                                                                                landmarks: bool) -> None:
    config = TrackerConfig(detect_every=10, max_gap=15)
    tracker = FaceTracker(config, landmarks=landmarks)
    seen_frames = [tracker.update(canvas(photo, 100, 50)) for _ in range(25)]  # last detection at frame 20
    gone = [tracker.update(canvas(None)) for _ in range(40)]  # frames 25..64
    back = [tracker.update(canvas(photo, 100, 50)) for _ in range(25)]  # frames 65..89
    assert all(not s.missing for s in seen_frames)
    statuses = [s.status for s in gone]
    # Carried up to 15 frames after the last detection (frame 20 -> up to 35), then missing.
    assert all(s in (CARRIED, "tracked") for s in statuses[:5])
    assert statuses.index(MISSING) <= 20 + 15 + 1 - 25
    assert all(s == MISSING for s in statuses[statuses.index(MISSING):])
    assert all(s.box is None and s.landmarks is None for s in gone if s.status == MISSING)
    # The face is found again within one detection interval once it is back.
    assert all(not s.missing for s in back[config.detect_every:])
    if landmarks:
        assert all(s.landmarks is not None for s in back[config.detect_every:])


def test_a_video_without_a_face_stays_missing_and_costs_one_detection_per_interval() -> None:
    tracker = FaceTracker(TrackerConfig(detect_every=10))
    statuses = [tracker.update(canvas(None)).status for _ in range(50)]
    assert statuses == [MISSING] * 50
    assert tracker.detections == 5


def test_crop_box_replicates_the_border_for_a_box_leaving_the_frame(photo: np.ndarray) -> None:
    frame = canvas(photo, 0, 0)
    crop = crop_box(frame, np.array([-20.0, -10.0, 60.0, 70.0]), 48)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    inside = crop_box(frame, np.array([10.0, 10.0, 90.0, 90.0]), 48, margin=0.1)
    assert inside.shape == (48, 48)
    with pytest.raises(ValueError):
        crop_box(frame, np.array([-200.0, -200.0, -100.0, -100.0]), 48)


def test_tracker_config_rejects_a_gap_shorter_than_the_detection_interval() -> None:
    with pytest.raises(ValueError):
        TrackerConfig(detect_every=10, max_gap=5)
    config = TrackerConfig.from_params({"detect_every": "5", "max_gap": 20, "window": 10})
    assert config.detect_every == 5 and config.max_gap == 20
