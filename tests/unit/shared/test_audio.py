"""Audio preprocessing: the paper's slices and spectrograms, one path for training and inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.data import discover, read_labels
from shared.media import probe, read_audio
from shared.modalities.audio import (
    DEFAULT_PARAMS,
    INPUT_NAME,
    MODALITY,
    SliceBuilder,
    prepare_audio,
    slice_geometry,
)
from shared.modalities.base import window_labels

SR = 16000


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_8s_slices_have_200_labels_and_4_stft_frames_per_label() -> None:
    assert slice_geometry(DEFAULT_PARAMS) == (200, 160), "8 s at 25 fps, 20 % overlap"
    windows = prepare_audio(_noise(20.0), n_frames=500)
    slices = windows.inputs[INPUT_NAME]
    assert slices.shape == (3, 800, 129) and slices.dtype == np.float32
    assert windows.label_frames.shape == (3, 200)
    np.testing.assert_array_equal(windows.info["starts"], [0, 160, 300])
    np.testing.assert_array_equal(windows.label_frames[1], np.arange(160, 360))
    assert window_labels(np.arange(500, dtype=np.float32), windows).shape == (3, 200)


def test_stft_frames_line_up_with_their_label_frames() -> None:
    audio = np.zeros(20 * SR, np.float32)
    t = np.arange(10 * 640) / SR
    audio[230 * 640: 240 * 640] = 0.5 * np.sin(2 * np.pi * 1000 * t)  # a tone in frames 230..239
    windows = prepare_audio(audio, n_frames=500)
    second = windows.inputs[INPUT_NAME][1]  # slice starting at frame 160: the tone is at labels 70..79
    energy = second.reshape(200, 4, -1).sum(axis=(1, 2))
    loud = np.nonzero(energy > 0.1 * energy.max())[0]
    assert loud.min() >= 69 and loud.max() <= 80 and {70, 79} <= set(loud.tolist())


def test_short_video_is_padded_to_one_slice() -> None:
    windows = prepare_audio(_noise(3.0), n_frames=75)
    assert windows.inputs[INPUT_NAME].shape == (1, 800, 129)
    assert windows.label_frames.max() == 74, "frames beyond the video repeat its last label"
    frames = MODALITY.to_frames(np.arange(200, dtype=np.float64)[None], windows)
    np.testing.assert_array_equal(frames, np.arange(75))


def test_stitching_puts_each_output_on_its_frame() -> None:
    windows = prepare_audio(_noise(30.0), n_frames=750)
    frames = MODALITY.to_frames(windows.label_frames.astype(np.float64), windows)
    np.testing.assert_array_equal(frames, np.arange(750))


def test_training_statistics_normalise_each_bin() -> None:
    clips = [prepare_audio(_noise(20.0, seed), n_frames=500) for seed in (1, 2)]
    params = MODALITY.fit_params(clips, dict(DEFAULT_PARAMS))
    assert len(params["feature_mean"]) == 129 and len(params["feature_std"]) == 129
    normalised = prepare_audio(_noise(20.0, 1), n_frames=500, params=params).inputs[INPUT_NAME]
    raw = clips[0].inputs[INPUT_NAME]
    assert not np.allclose(normalised, raw)
    pooled = np.concatenate([normalised.reshape(-1, 129),
                             prepare_audio(_noise(20.0, 2), 500, params).inputs[INPUT_NAME].reshape(-1, 129)])
    np.testing.assert_allclose(pooled.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(pooled.std(axis=0), 1, atol=1e-3)


def test_training_and_inference_preparation_are_identical(synthetic_dataset: Path) -> None:
    """What the trainer feeds the model is what serving feeds it, after metadata has been through JSON."""
    from training.trainer import prepare_clips

    clips = discover(synthetic_dataset)
    train_clip, other = clips[0], clips[1]
    params = {**MODALITY.default_params(), "known_subjects": [1, 2]}
    params = MODALITY.fit_params([w.windows for w in prepare_clips(MODALITY, [train_clip], params)], params)
    trained = prepare_clips(MODALITY, [other], params)[0]
    served_params = json.loads(json.dumps(params))  # as read back from metadata.json
    served = MODALITY.prepare(other.video, subject=other.subject, transcript=other.transcript, params=served_params)
    np.testing.assert_array_equal(trained.windows.inputs[INPUT_NAME], served.inputs[INPUT_NAME])
    np.testing.assert_array_equal(trained.windows.label_frames, served.label_frames)
    labels = read_labels(other.labels)
    np.testing.assert_array_equal(trained.targets, labels[served.label_frames])


def test_slices_fed_in_chunks_equal_the_whole_recording_at_once() -> None:
    """A video's audio streams into the slices 10 s at a time; any chunking gives the same model input."""
    audio = _noise(37.3, seed=4)
    params = {"feature_mean": [0.1] * 129, "feature_std": [2.0] * 129}
    whole = prepare_audio(audio, n_frames=933, params=params)
    for chunk in (1000, 160_000, 333_333):
        builder = SliceBuilder(933, params)
        for start in range(0, audio.size, chunk):
            builder.feed(audio[start:start + chunk])
        streamed = builder.finish()
        np.testing.assert_array_equal(streamed.inputs[INPUT_NAME], whole.inputs[INPUT_NAME])
        np.testing.assert_array_equal(streamed.label_frames, whole.label_frames)
    assert builder.buffer.size == 0  # nothing kept once the last slice is made


def test_audio_shorter_than_the_video_is_silence_in_the_last_slices() -> None:
    windows = prepare_audio(_noise(10.0), n_frames=1000)  # 40 s of frames, 10 s of audio
    starts = windows.info["starts"]
    slices = windows.inputs[INPUT_NAME]
    after = starts >= 250 + 2  # slices starting after the audio (and the STFT's half window) ended
    assert after.any() and not np.any(slices[after])
    assert np.all(slices[starts == 0].any(axis=(1, 2)))


def test_a_video_streams_into_the_same_slices_as_its_whole_track(synthetic_dataset: Path) -> None:
    clip = discover(synthetic_dataset)[0]
    params = {**MODALITY.default_params(), "feature_mean": [0.0] * 129, "feature_std": [3.0] * 129}
    served = MODALITY.prepare(clip.video, subject=clip.subject, params=params)
    whole = prepare_audio(read_audio(clip.video), probe(clip.video).n_frames, params)
    np.testing.assert_array_equal(served.inputs[INPUT_NAME], whole.inputs[INPUT_NAME])


def test_fitted_statistics_apply_to_raw_slices_only() -> None:
    """``apply_fitted`` turns raw slices into exactly what preparing with the statistics stores, and refuses
    slices already normalised (normalising twice would feed the model other numbers than inference)."""
    params = {**DEFAULT_PARAMS, "feature_mean": [0.1] * 129, "feature_std": [2.0] * 129}
    raw = prepare_audio(_noise(12.0, seed=5), n_frames=300)
    applied = MODALITY.apply_fitted(raw, params)
    prepared = prepare_audio(_noise(12.0, seed=5), n_frames=300, params=params)
    np.testing.assert_array_equal(applied.inputs[INPUT_NAME], prepared.inputs[INPUT_NAME])
    assert MODALITY.apply_fitted(raw, dict(DEFAULT_PARAMS)) is raw  # no statistics: nothing to apply
    with pytest.raises(ValueError, match="normalised already"):
        MODALITY.apply_fitted(prepared, params)
