"""training.trainer's data preparation: every clip prepared once, into what inference prepares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.data import discover, split_by_story
from shared.modalities.audio import INPUT_NAME, AudioModality
from shared.modalities.base import Windows
from training.trainer import prepare_data


class CountingAudio(AudioModality):
    """The real audio modality, recording which videos it prepared."""

    def __init__(self) -> None:
        self.prepared: list[str] = []

    def prepare(self, video: Path, **options: Any) -> Windows:
        self.prepared.append(str(video))
        return super().prepare(video, **options)


def test_each_clip_is_prepared_once_into_what_inference_prepares(synthetic_dataset: Path) -> None:
    clips = [c for c in discover(synthetic_dataset) if c.labels is not None]
    train_clips, val_clips = split_by_story(clips, 2)
    modality = CountingAudio()
    params = {**modality.default_params(), "known_subjects": [1, 2]}
    fitted, train_data, val_data = prepare_data(modality, train_clips, val_clips, params)

    assert sorted(modality.prepared) == sorted(str(c.video) for c in clips)  # each clip once, none twice
    assert len(fitted["feature_mean"]) == 129 and params.get("feature_mean") is None
    served_params = json.loads(json.dumps(fitted))  # as inference reads them back from metadata.json
    for prepared in (train_data[0], val_data[0]):
        served = AudioModality().prepare(prepared.clip.video, subject=prepared.clip.subject, params=served_params)
        np.testing.assert_array_equal(prepared.windows.inputs[INPUT_NAME], served.inputs[INPUT_NAME])
        np.testing.assert_array_equal(prepared.windows.label_frames, served.label_frames)
    pooled = np.concatenate([p.windows.inputs[INPUT_NAME].reshape(-1, 129) for p in train_data])
    np.testing.assert_allclose(pooled.mean(axis=0), 0, atol=1e-3)  # normalised with the training statistics
