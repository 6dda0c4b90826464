"""Language preprocessing: tokens with times -> windows of 100 lexicon vectors -> per-frame valence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.data import Word, discover, read_labels
from shared.modalities.base import UNKNOWN_SUBJECT_INDEX, subject_index, window_labels
from shared.modalities.text import MODALITY, prepare_words, tokens_with_times

PARAMS = {"lexicons": "nrc+vader", "lexicon_missing": "zero", "known_subjects": [3, 5], "window_words": 100}


def _words() -> list[Word]:
    return [Word("Happy", 0.10, 0.50), Word("the", 0.60, 0.70), Word("terrible,", 1.00, 1.61),
            Word("well-being", 2.00, 2.40)]


def test_windows_hold_the_last_100_word_vectors_left_padded() -> None:
    windows = prepare_words(_words(), n_frames=100, subject=5, params=PARAMS)
    words = windows.inputs["words"]
    assert words.shape == (5, 100, 11) and words.dtype == np.float32
    assert not words[0, :99].any(), "before the first word there is only padding"
    np.testing.assert_array_equal(words[4, -5:], words[:, -1], err_msg="window i ends with words 0..i")
    assert words[0, -1, -1] > 0 and words[2, -1, -1] < 0, "VADER sign of 'happy' and 'terrible'"
    assert windows.inputs["subject"].tolist() == [2] * 5
    assert windows.info["tokens"] == ["happy", "the", "terrible", "well", "being"]


def test_multi_token_items_share_their_span() -> None:
    tokens = tokens_with_times([Word("well-being", 2.0, 2.4), Word("!", 3.0, 3.1)])
    assert [(t.text, t.start, t.end) for t in tokens] == [("well", 2.0, 2.2), ("being", 2.2, 2.4)]


def test_word_targets_are_the_mean_valence_over_the_span() -> None:
    windows = prepare_words(_words(), n_frames=100, subject=3, params=PARAMS)
    labels = np.linspace(-1, 1, 100).astype(np.float32)
    targets = window_labels(labels, windows)
    # 'terrible' spans 1.00-1.61 s -> frames 25..40 (ceil(1.61 * 25) = 41, exclusive)
    np.testing.assert_array_equal(windows.label_spans[2], [25, 41])
    assert targets[2] == pytest.approx(labels[25:41].mean(), abs=1e-6)
    assert windows.label_frames[2] == 40, "the prediction applies once the word has been heard"


def test_frames_take_the_valence_of_the_words_heard_so_far() -> None:
    windows = prepare_words(_words(), n_frames=100, subject=3, params=PARAMS)
    frames = MODALITY.to_frames(np.array([10.0, 20.0, 30.0, 40.0, 50.0]), windows)
    assert frames.shape == (100,) and np.isfinite(frames).all()
    ends = windows.label_frames
    assert (frames[: ends[0]] == 10).all(), "before the first word: its prediction, never undefined"
    assert frames[ends[1]] == 20 and frames[ends[2] - 1] == 20 and frames[ends[2]] == 30
    assert (frames[ends[4]:] == 50).all()


def test_no_words_means_the_modality_sees_nothing() -> None:
    windows = prepare_words([], n_frames=50, subject=3, params=PARAMS)
    assert len(windows) == 0 and windows.missing.all()
    assert np.isnan(MODALITY.to_frames(np.zeros(0), windows)).all()


def test_subject_index_reserves_zero_for_unknown_listeners() -> None:
    assert subject_index(5, [3, 5, 9]) == 2
    assert subject_index(4, [3, 5, 9]) == UNKNOWN_SUBJECT_INDEX == 0
    windows = prepare_words(_words(), n_frames=100, subject=7, params=PARAMS)
    assert (windows.inputs["subject"] == 0).all()


def test_prepare_from_video_and_transcript_matches_word_preparation(synthetic_dataset: Path) -> None:
    clip = discover(synthetic_dataset)[0]
    windows = MODALITY.prepare(clip.video, subject=clip.subject, transcript=clip.transcript, params=PARAMS)
    labels = read_labels(clip.labels)
    assert windows.n_frames == labels.size and len(windows) > 10
    targets = window_labels(labels, windows)
    vader = windows.inputs["words"][:, -1, -1]
    emotional = vader != 0
    assert np.corrcoef(vader[emotional], targets[emotional])[0, 1] > 0.5, "synthetic words follow valence"


def test_training_and_inference_preparation_are_identical(synthetic_dataset: Path) -> None:
    import json

    from training.trainer import prepare_clips

    clip = discover(synthetic_dataset)[0]
    params = MODALITY.fit_params([], {**MODALITY.default_params(), "known_subjects": [1, 2]})
    trained = prepare_clips(MODALITY, [clip], params)[0]
    served = MODALITY.prepare(clip.video, subject=clip.subject, transcript=clip.transcript,
                              params=json.loads(json.dumps(params)))
    for name in ("words", "subject"):
        np.testing.assert_array_equal(trained.windows.inputs[name], served.inputs[name])
    np.testing.assert_array_equal(trained.targets, window_labels(read_labels(clip.labels), served))
