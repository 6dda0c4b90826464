"""Paper-size models for timing: the five architectures at the paper's sizes, untrained, in a model repository.

The bundled models (:mod:`training.bootstrap`) are small so that they build in minutes; a user who trains the
paper's architectures (``empathy train``) serves a ResNet-18-3D over 16x128x128 body windows, 3D convolutions
with 32 and 64 filters over face windows, a 250+250 BiGRU over 800 spectrogram frames. Speed and memory
depend on the architecture, not on the weights, so ``empathy bench --paper-size-models`` measures whole jobs
with these: built by :mod:`training.models` with their default (paper) hyperparameters, exported as the
trainer exports (SavedModel + metadata with the modality's default preprocessing), never trained.
Their predictions mean nothing; only their cost does.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from serving.model_store import list_versions, publish_version, staging_dir
from shared.modalities.base import get_modality
from shared.settings import MODALITIES

# Statistics for the re-scaling step (the pipeline needs some; the values do not matter for timing).
STATS = {"1": {"mean": 0.0, "std": 0.5}, "global": {"mean": 0.0, "std": 0.5}}


def ensure_paper_size_models(models_dir: Path, sample_video: Path, sample_transcript: Path | None) -> Path:
    """Build (once) every missing paper-size model under ``models_dir``; the sample clip gives input shapes."""
    for name in MODALITIES:
        if list_versions(models_dir / name):
            continue
        modality = get_modality(name)
        params = {**modality.default_params(), "known_subjects": [1]}
        windows = modality.prepare(sample_video, subject=1, transcript=sample_transcript, params=params)
        shapes = {key: tuple(value.shape[1:]) for key, value in windows.inputs.items()}
        model = importlib.import_module(f"training.models.{name}").build_model(shapes, 1)
        staging = staging_dir(models_dir, name)
        model.export(str(staging), format="tf_saved_model", verbose=False)
        metadata = {
            "inputs": {key: {"shape": [None, *shape], "dtype": str(np.dtype(windows.inputs[key].dtype))}
                       for key, shape in shapes.items()},
            "output": "output_0", "preprocessing": params, "cutoff_hz": 0.01, "val_ccc": 0.0,
            "val_ccc_filtered": 0.0, "subject_stats": STATS, "known_subjects": [1],
            "note": "untrained paper-size architecture, for benchmarking only",
        }
        publish_version(staging, models_dir, name, metadata)
    return models_dir
