"""Raw-face model (paper Sec. II-C1): two 3D conv blocks over 10x48x48 face crops, plus a subject vector.

Each block is two Conv3D 3x3x3 ReLU, a max-pool and batch normalisation (32 then 64 filters). A trainable
3-dim subject embedding is concatenated before Dense 128 ReLU -> Dense 32 ReLU -> Dense 1 (linear). Row 0
of the embedding is the unknown listener (:func:`shared.modalities.base.subject_index`), trained by
randomly dropping the subject (``subject_dropout``) so that a new listener gets an average vector.
"""

from __future__ import annotations

import keras
from keras import layers

from shared.modalities.face import INPUT_FACE, INPUT_SUBJECT
from training.models.common import subject_embedding


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int, *,
                filters: tuple[int, ...] = (32, 64), embedding_dim: int = 3, subject_dropout: float = 0.1,
                dense: tuple[int, ...] = (128, 32), pool: tuple[int, int, int] = (2, 2, 2),
                bn_momentum: float = 0.99) -> keras.Model:
    """The paper's architecture; ``filters``/``dense`` shrink it for tests.

    'same' padding keeps both blocks valid on 10-frame windows (with 'valid' the second block would have no
    frames left). ``bn_momentum``: Keras' 0.99 needs a few hundred steps before the moving statistics used
    at inference match the batches; short runs on small sets need a lower value (0.9).
    """
    face = keras.Input(shape=tuple(input_shapes[INPUT_FACE]), name=INPUT_FACE)
    subject = keras.Input(shape=(), dtype="int32", name=INPUT_SUBJECT)
    x = layers.Reshape((*input_shapes[INPUT_FACE], 1))(face)
    for n in filters:
        x = layers.Conv3D(n, 3, padding="same", activation="relu")(x)
        x = layers.Conv3D(n, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling3D(pool, padding="same")(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Flatten()(x)
    who = subject_embedding(subject, n_subjects, embedding_dim, subject_dropout)
    x = layers.Concatenate()([x, who])
    for units in dense:
        x = layers.Dense(units, activation="relu")(x)
    out = layers.Dense(1, name="valence")(x)
    return keras.Model(inputs={INPUT_FACE: face, INPUT_SUBJECT: subject}, outputs=out, name="face")
