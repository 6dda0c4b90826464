"""The language model (paper Sec. II-B): LSTM over 100 word vectors -> attention -> [s ; subject] -> Dense(1).

Inputs: ``words`` (100, 11) lexicon vectors of the last 100 words, ``subject`` () int32 subject index
(0 = unknown listener). The paper fixes the attention, the size-2 subject vector and the final affine map;
the LSTM size is the authors' code's 64. Their code also had input dropout 0.2 and a Dense(32) layer before
the output, which the paper does not describe: ``input_dropout`` and ``hidden`` reproduce them when set.
"""

from __future__ import annotations

import keras

from shared.modalities.text import SUBJECT_INPUT, WORDS_INPUT
from training.models.common import AttentionPooling, subject_embedding


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int, *, lstm_units: int = 64,
                subject_dim: int = 2, subject_dropout: float = 0.1, input_dropout: float = 0.0,
                hidden: int = 0) -> keras.Model:
    words = keras.Input(shape=input_shapes[WORDS_INPUT], name=WORDS_INPUT)
    subject = keras.Input(shape=(), dtype="int32", name=SUBJECT_INPUT)
    x = keras.layers.Dropout(input_dropout, name="input_dropout")(words) if input_dropout > 0 else words
    states = keras.layers.LSTM(lstm_units, return_sequences=True, name="lstm")(x)
    summary = AttentionPooling(name="attention")(states)
    joined = keras.layers.Concatenate(name="with_subject")(
        [summary, subject_embedding(subject, n_subjects, subject_dim, subject_dropout)])
    if hidden > 0:
        joined = keras.layers.Dense(hidden, activation="relu", name="hidden")(joined)
    valence = keras.layers.Dense(1, name="valence")(joined)
    return keras.Model(inputs={WORDS_INPUT: words, SUBJECT_INPUT: subject}, outputs=valence, name="text")
