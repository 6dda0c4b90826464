"""Face, landmarks and body windows from real videos: shapes, labels, normalisation, no-face frames, every k."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from shared.media import probe
from shared.modalities.base import get_modality, subject_index
from shared.pipeline import inference_params
from shared.settings import Settings, load_settings

WIDTH, HEIGHT = 640, 360


def _clip(synthetic_dataset: Path, subject: int = 1, story: int = 1) -> Path:
    return synthetic_dataset / "Videos" / f"Subject_{subject}_Story_{story}.mp4"


def write_face_video(path: Path, visible: list[bool]) -> Path:
    """A 25 fps H.264 video: the astronaut's head on a grey wall on frames where ``visible``, else the bare wall."""
    photo = data.astronaut()[0:240, 100:340]  # her head and shoulders
    head = cv2.resize(photo, (300, 300), interpolation=cv2.INTER_AREA)  # a ~110 px face
    wall = np.full((HEIGHT, WIDTH, 3), 120, dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18"}
        for i, show in enumerate(visible):
            frame = wall.copy()
            if show:
                x = 150 + int(10 * np.sin(i / 10))
                frame[30:330, x:x + 300] = head
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def gap_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s face, 3 s without, 2 s face again."""
    visible = [True] * 50 + [False] * 75 + [True] * 50
    return write_face_video(tmp_path_factory.mktemp("vision") / "gap.mp4", visible)


@pytest.fixture(scope="module")
def faceless_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_video(tmp_path_factory.mktemp("vision") / "faceless.mp4", [False] * 40)


@pytest.mark.parametrize(("name", "shape", "input_name"), [
    ("face", (10, 48, 48), "face"),
    ("landmarks", (25, 136), "landmarks"),
    ("body", (16, 128, 128), "body"),
])
def test_window_shapes_labels_and_per_video_normalisation(synthetic_dataset: Path, name: str,
                                                          shape: tuple[int, ...], input_name: str) -> None:
    video = _clip(synthetic_dataset)
    modality = get_modality(name)
    windows = modality.prepare(video, subject=1, params={**modality.default_params(), "predict_every": 1,
                                                         "known_subjects": [1, 2]})
    n_frames = probe(video).n_frames
    assert windows.n_frames == n_frames
    x = windows.inputs[input_name]
    assert x.shape[1:] == shape and x.dtype == np.float32 and len(x) == len(windows)
    assert not windows.missing.any()  # the synthetic listener's face is always visible
    if name == "body":  # every 5th frame and label (the paper's down-sampling)
        np.testing.assert_array_equal(windows.label_frames, np.arange(0, n_frames, 5))
    else:  # one window per frame, labelled with its last frame
        np.testing.assert_array_equal(windows.label_frames, np.arange(n_frames))
    batch = x[len(x) // 2:len(x) // 2 + 8]
    assert batch.shape == (8, *shape) and np.isfinite(batch).all()
    # z-normalised per video: the frames seen by all windows have mean ~0 and std ~1.
    frames = x.features[np.unique(x.index)].astype(np.float64)
    normalised = (frames - x.mean) / x.std
    if name == "landmarks":  # per series
        np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-3)
        np.testing.assert_allclose(normalised.std(axis=0), 1.0, atol=1e-3)
    else:
        assert abs(normalised.mean()) < 1e-3 and abs(normalised.std() - 1.0) < 1e-3
    # The last step of a window is its label frame; the first window is padded with the first frame.
    first = x[0]
    np.testing.assert_array_equal(first[0], first[-1])
    if name == "face":
        assert windows.inputs["subject"].tolist() == [subject_index(1, [1, 2])] * len(windows)


def test_landmarks_of_the_synthetic_listener_are_a_face(synthetic_dataset: Path) -> None:
    modality = get_modality("landmarks")
    windows = modality.prepare(_clip(synthetic_dataset, 2, 3), subject=2, params=modality.default_params())
    raw = windows.inputs["landmarks"].features.reshape(-1, 68, 2)
    eyes_y, mouth_y, chin_y = raw[:, 36:48, 1].mean(axis=1), raw[:, 48:68, 1].mean(axis=1), raw[:, 8, 1]
    assert (eyes_y < mouth_y).all() and (mouth_y < chin_y).all()
    # ~ one HOG detection per 10 frames: the shape predictor does the per-frame work.
    assert windows.info["detections"] <= windows.n_frames / 10 + 10


@pytest.mark.parametrize("name", ["face", "landmarks"])
def test_frames_without_a_face_are_reported_missing_and_get_no_prediction(gap_video: Path, name: str) -> None:
    modality = get_modality(name)
    params = modality.default_params()
    windows = modality.prepare(gap_video, subject=1, params=params)
    missing = windows.missing
    assert windows.n_frames == 175
    assert not missing[:50].any()
    # The face leaves at frame 50; its box may be carried at most max_gap frames after the last detection.
    assert missing[50 + int(params["max_gap"]):125].all()
    assert not missing[125 + int(params["detect_every"]):].any()  # found again at the next detection
    assert not missing[windows.label_frames].any()  # no window is anchored on a frame without a face
    predictions = np.linspace(-1, 1, len(windows)).astype(np.float32)[:, None]
    frames = modality.to_frames(predictions, windows)
    assert frames.shape == (175,)
    np.testing.assert_array_equal(np.isnan(frames), missing)


@pytest.mark.parametrize("name", ["face", "landmarks"])
def test_a_video_without_any_face_gives_no_windows_and_all_frames_missing(faceless_video: Path, name: str) -> None:
    modality = get_modality(name)
    windows = modality.prepare(faceless_video, subject=1, params=modality.default_params())
    assert len(windows) == 0 and windows.missing.all() and windows.n_frames == 40
    assert np.isnan(modality.to_frames(np.zeros((0, 1), np.float32), windows)).all()


def test_body_crop_is_automatic_configured_or_the_whole_frame(synthetic_dataset: Path, faceless_video: Path) -> None:
    modality = get_modality("body")
    auto = modality.prepare(_clip(synthetic_dataset), subject=1, params=modality.default_params())
    assert auto.info["crop_from"] == "automatic"
    x0, y0, x1, y1 = auto.info["crop"]
    assert 0.1 < x0 < x1 < 0.9 and y1 == pytest.approx(1.0)  # around the listener, down to the frame's bottom
    none = modality.prepare(faceless_video, subject=1, params=modality.default_params())
    assert none.info["crop_from"] == "whole frame" and not none.missing.any()
    settings = load_settings({"EMPATHY_BODY_CROP": "2=0.1,0.1,0.5,0.5;*=0.25,0,0.75,1",
                              "EMPATHY_LISTENER_CROP": "0.5,0,1,1"})
    params = inference_params("body", {"preprocessing": modality.default_params()}, settings)
    configured = modality.prepare(_clip(synthetic_dataset), subject=1, params=params)
    own = modality.prepare(_clip(synthetic_dataset), subject=2, params=params)
    assert configured.info["crop_from"] == "configured"
    assert configured.info["crop"] == pytest.approx([0.625, 0.0, 0.875, 1.0])  # inside the listener half
    assert own.info["crop"] == pytest.approx([0.55, 0.1, 0.75, 0.5])


@pytest.mark.parametrize(("name", "k"), [("face", 5), ("landmarks", 5), ("body", 3)])
def test_predicting_every_k_th_frame_reuses_the_same_windows(synthetic_dataset: Path, name: str, k: int) -> None:
    modality = get_modality(name)
    video = _clip(synthetic_dataset, 2, 2)
    full = modality.prepare(video, subject=2, params={**modality.default_params(), "predict_every": 1})
    sparse = modality.prepare(video, subject=2, params={**modality.default_params(), "predict_every": k})
    step = 5 if name == "body" else 1
    assert sparse.label_frames[0] == 0 and sparse.label_frames[-1] == full.label_frames[-1]
    assert set(np.diff(sparse.label_frames[:-1]).tolist()) == {k * step}
    key = next(iter(full.inputs))
    rows = np.searchsorted(full.label_frames, sparse.label_frames)
    np.testing.assert_array_equal(sparse.inputs[key][:], full.inputs[key][rows])


def test_the_body_crop_comes_from_the_model_unless_the_setting_overrides_it() -> None:
    """Training records EMPATHY_BODY_CROP in the body model; inference keeps it unless the setting names one."""
    recorded = {"preprocessing": {**get_modality("body").default_params(), "body_crop": "0.2,0,0.8,1"}}
    assert inference_params("body", recorded, Settings())["body_crop"] == "0.2,0,0.8,1"
    override = load_settings({"EMPATHY_BODY_CROP": "*=0.25,0,0.75,1"})
    assert inference_params("body", recorded, override)["body_crop"] == "*=0.25,0,0.75,1"
    assert "body_crop" not in inference_params("face", {"preprocessing": {}}, override)
