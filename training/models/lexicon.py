"""The word-valence model: the mean of a window's rated-word valences (no weights to learn, nothing trained)."""

from __future__ import annotations

from typing import Any

TRAINED_ON = ("no training: VADER's lexicon (Hutto & Gilbert 2014; mean valence ratings of ~7,500 words by 10 "
              "raters each, vaderSentiment package, MIT) read for the recognised words, averaged over the last few")


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int = 0) -> Any:
    """(window_words,) valences in [-1, 1] -> their mean (batch, 1). ``n_subjects`` unused."""
    import keras

    inputs = keras.Input(shape=tuple(input_shapes["valence"]), dtype="float32", name="valence")
    mean = keras.layers.Dense(1, use_bias=False, trainable=False, name="mean")
    outputs = mean(inputs)
    width = int(input_shapes["valence"][-1])
    mean.set_weights([keras.ops.convert_to_numpy(keras.ops.full((width, 1), 1.0 / width))])
    return keras.Model(inputs=inputs, outputs=outputs)
