"""The three vision models: the paper's architectures, and exported SavedModels that give the Keras numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.client import LocalPredictor
from shared.modalities.frame_windows import LazyWindows, window_index
from training.batches import predict_in_batches
from training.models import get_spec
from training.trainer import export_model

SHAPES = {
    "face": {"face": (10, 48, 48), "subject": ()},
    "landmarks": {"landmarks": (25, 136)},
    "body": {"body": (16, 128, 128)},
}
TINY = {
    "face": {"filters": (4, 8), "dense": (16, 8)},
    "landmarks": {"filters": (8, 8, 16, 16)},
    "body": {"depth": 10, "base_filters": 4, "head": (16, 8)},
}


def test_paper_architectures() -> None:
    import keras

    face = get_spec("face").build(SHAPES["face"], 10)
    assert [type(layer).__name__ for layer in face.layers].count("Conv3D") == 4
    assert [layer.filters for layer in face.layers if type(layer).__name__ == "Conv3D"] == [32, 32, 64, 64]
    assert face.get_layer("subject_embedding").output_dim == 3
    assert face.get_layer("subject_embedding").input_dim == 11  # 10 subjects + "unknown"
    assert [layer.units for layer in face.layers if isinstance(layer, keras.layers.Dense)] == [128, 32, 1]

    landmarks = get_spec("landmarks").build(SHAPES["landmarks"], 10)
    convs = [layer for layer in landmarks.layers if isinstance(layer, keras.layers.Conv1D)]
    assert [c.filters for c in convs] == [100, 100, 160, 160] and {c.kernel_size for c in convs} == {(4,)}
    assert isinstance(landmarks.layers[2], keras.layers.BatchNormalization)
    assert [layer.units for layer in landmarks.layers if isinstance(layer, keras.layers.Dense)] == [32, 1]

    body = get_spec("body").build(SHAPES["body"], 10)
    convs = [layer for layer in body.layers if isinstance(layer, keras.layers.Conv3D)]
    # ResNet-18: stem + 8 basic blocks x 2 convolutions + 3 projection shortcuts.
    assert len(convs) == 1 + 16 + 3 and convs[0].kernel_size == (7, 7, 7)
    assert 30e6 < body.count_params() < 36e6
    assert [layer.units for layer in body.layers if isinstance(layer, keras.layers.Dense)] == [512, 32, 1]
    with pytest.raises(ValueError):
        get_spec("body").build(SHAPES["body"], 10, depth=19)
    for name in SHAPES:
        assert get_spec(name).default_hparams()  # the CLI can show and override them


def _lazy_inputs(name: str, n: int, rng: np.random.Generator) -> dict[str, object]:
    """Windows like the modality builds them: lazy views over per-frame uint8 crops or float landmarks."""
    shape = SHAPES[name][name]
    frames = n + shape[0]
    if name == "landmarks":
        features = rng.normal(200.0, 30.0, (frames, shape[1])).astype(np.float32)
        mean, std = features.mean(axis=0), features.std(axis=0)
    else:
        features = rng.integers(0, 256, (frames, *shape[1:]), dtype=np.uint8)
        mean, std = float(features.mean()), float(features.std())
    ends = np.arange(shape[0] - 1, shape[0] - 1 + n)
    inputs: dict[str, object] = {name: LazyWindows(features, window_index(ends, shape[0], np.arange(frames)),
                                                   mean=mean, std=std)}
    if name == "face":
        inputs["subject"] = rng.integers(0, 3, n).astype(np.int32)
    return inputs


@pytest.mark.parametrize("name", ["face", "landmarks", "body"])
def test_exported_savedmodel_gives_the_keras_models_numbers(name: str, tmp_models_dir: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = get_spec(name).build(SHAPES[name], 2, **TINY[name])
    inputs = _lazy_inputs(name, 21, rng)
    # Train one step so batch-norm statistics and weights are not at their initial values.
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch({k: np.asarray(v[:16]) for k, v in inputs.items()}, rng.normal(size=(16, 1)))
    expected = predict_in_batches(model, inputs, batch_size=8)
    target = export_model(model, tmp_models_dir, name, {"preprocessing": {}}, inputs)
    exported = LocalPredictor(target, batch_size=5).predict(inputs)
    assert exported.shape == (21, 1)
    np.testing.assert_allclose(exported, expected, atol=1e-4, rtol=1e-3)
    assert np.std(exported) > 0  # a constant model would make the comparison meaningless
