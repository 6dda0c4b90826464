"""Face-landmarks model (paper Sec. II-C2): a 1D CNN over 25 frames of the 136 landmark series.

Conv1D 100 -> BatchNorm -> Conv1D 100, 160, 160 -> GlobalAveragePooling1D -> Dense 32 -> Dense 1; every
layer but the output has kernel 4 (convolutions) and ReLU, as the paper states.
"""

from __future__ import annotations

import keras
from keras import layers

from shared.modalities.landmarks import INPUT_LANDMARKS


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int, *,
                filters: tuple[int, ...] = (100, 100, 160, 160), kernel: int = 4,
                dense: int = 32, bn_momentum: float = 0.99) -> keras.Model:
    """The paper's architecture (``n_subjects`` unused: no subject vector); ``bn_momentum`` as in
    :func:`training.models.face.build_model`."""
    series = keras.Input(shape=tuple(input_shapes[INPUT_LANDMARKS]), name=INPUT_LANDMARKS)
    x = layers.Conv1D(filters[0], kernel, activation="relu")(series)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    for n in filters[1:]:
        x = layers.Conv1D(n, kernel, activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(dense, activation="relu")(x)
    out = layers.Dense(1, name="valence")(x)
    return keras.Model(inputs={INPUT_LANDMARKS: series}, outputs=out, name="landmarks")
