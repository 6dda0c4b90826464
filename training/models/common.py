"""Pieces every modality model shares: the CCC loss, the subject embedding with its "unknown" row, attention.

All layers are written with ``keras.ops`` only and are registered as serialisable, so a model using them
exports to a SavedModel (``model.export``) whose ``serving_default`` needs none of this Python code.
"""

from __future__ import annotations

import keras
from keras import ops


def ccc_loss(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
    """1 - CCC over every value of the batch (population statistics, as the challenge's metric).

    A sequence output (audio: 200 values per slice) is flattened: the batch is one long curve. The small
    epsilon only guards a batch whose targets and predictions are both constant.
    """
    t = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    p = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    mt, mp = ops.mean(t), ops.mean(p)
    cov = ops.mean((t - mt) * (p - mp))
    denom = ops.var(t) + ops.var(p) + ops.square(mt - mp)
    return 1.0 - 2.0 * cov / (denom + 1e-8)


@keras.saving.register_keras_serializable(package="empathy")
class SubjectDropout(keras.layers.Layer):
    """During training, replace a subject index by 0 ("unknown listener") with probability ``rate``.

    Row 0 of the subject embedding is what a new listener gets at inference; without this it would never
    be trained and would stay at its random initialisation. At inference the layer is the identity.
    """

    def __init__(self, rate: float = 0.1, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, subjects: keras.KerasTensor, training: bool | None = None) -> keras.KerasTensor:
        if not training or self.rate <= 0:
            return subjects
        drop = keras.random.uniform(ops.shape(subjects), seed=self.seed_generator) < self.rate
        return ops.where(drop, ops.zeros_like(subjects), subjects)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def subject_embedding(subjects: keras.KerasTensor, n_subjects: int, dim: int, dropout: float,
                      name: str = "subject_embedding") -> keras.KerasTensor:
    """(batch,) int subject indices -> (batch, dim) trainable vectors; ``n_subjects + 1`` rows (row 0 = unknown)."""
    dropped = SubjectDropout(dropout, name=f"{name}_dropout")(subjects)
    return keras.layers.Embedding(n_subjects + 1, dim, name=name)(dropped)


@keras.saving.register_keras_serializable(package="empathy")
class AttentionPooling(keras.layers.Layer):
    """The paper's attention: ``z_i = w_a . h_i + b_a``, ``alpha = softmax(z)``, ``s = sum_i alpha_i h_i``.

    Input (batch, N, d) hidden states, output (batch, d): a weighted mean whose weights say which words
    matter for the current valence.
    """

    def build(self, input_shape: tuple) -> None:
        d = int(input_shape[-1])
        self.w = self.add_weight(name="w_a", shape=(d,), initializer="glorot_uniform")
        self.b = self.add_weight(name="b_a", shape=(), initializer="zeros")

    def call(self, hidden: keras.KerasTensor) -> keras.KerasTensor:
        z = ops.tensordot(hidden, self.w, axes=1) + self.b  # (batch, N)
        alpha = ops.softmax(z, axis=-1)
        return ops.sum(hidden * ops.expand_dims(alpha, -1), axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[-1])
