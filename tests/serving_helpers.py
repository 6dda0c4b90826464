"""Helpers for the serving tests: a tiny two-input Keras model exported like training exports models."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def build_tiny_model(seed: int):
    """x (4 floats) + subject (int32 id, embedded) -> one valence value; weights depend on ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input(shape=(4,), name="x")
    subject = keras.Input(shape=(), dtype="int32", name="subject")
    embedded = keras.layers.Embedding(11, 2)(subject)
    hidden = keras.layers.Dense(3, activation="tanh")(keras.layers.Concatenate()([x, embedded]))
    return keras.Model([x, subject], keras.layers.Dense(1, name="valence")(hidden))


def export_tiny_model(version_dir: Path, seed: int):
    """Export a fresh tiny model to ``version_dir`` (``<base>/<n>``) with ``model.export``; returns the model."""
    model = build_tiny_model(seed)
    model.export(str(version_dir), verbose=False)
    return model


def sample_inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` windows; x[:, 0] is the window index so that order mistakes change the outputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 0] = np.arange(n, dtype=np.float32) / max(n, 1)
    return {"x": x, "subject": (np.arange(n) % 11).astype(np.int32)}


def keras_predict(model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(model.predict([inputs["x"], inputs["subject"]], verbose=0, batch_size=len(inputs["x"])))


def wait_for(condition, timeout_s: float = 15.0, interval_s: float = 0.05):
    """Poll ``condition()`` until it returns something truthy; fail loudly on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)
