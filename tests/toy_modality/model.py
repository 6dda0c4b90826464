"""The toy modality's model builder (``build_model``, the contract of :mod:`training.models`)."""

from __future__ import annotations

from typing import Any


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int, *, hidden: int = 4) -> Any:
    """Brightness window -> Dense(hidden, tanh) -> Dense(1); ``n_subjects`` unused (no subject embedding)."""
    import keras

    inputs = keras.Input(shape=tuple(input_shapes["brightness"]), dtype="float32", name="brightness")
    hidden_layer = keras.layers.Dense(hidden, activation="tanh")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs=inputs, outputs=keras.layers.Dense(1)(hidden_layer))
