"""The speech model (paper Sec. II-A): BiGRU 250+250 -> BatchNorm -> Dropout 0.3 -> Dense(200, linear).

Input: one 8 s slice, (800 STFT frames, 129 bins), named ``spectrogram``. Output: 200 valence values, one
per 40 ms frame of the slice.

``head`` chooses how the recurrent states reach the 200 outputs:

* ``"sequence"`` (default) -- the authors' code: the GRU returns every step, BatchNorm, a per-step linear
  bottleneck (``bottleneck`` = 8 units), Dropout, Flatten, Dense(200). Each output can read the part of the
  slice it belongs to, which is what a sequence-to-sequence design means.
* ``"last"`` -- the paper's sentence read literally: only the final forward/backward states (500 values)
  go through BatchNorm, Dropout and Dense(200).
"""

from __future__ import annotations

import keras

from shared.modalities.audio import INPUT_NAME


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int, *, gru_units: int = 250,
                dropout: float = 0.3, output_steps: int = 200, head: str = "last",
                bottleneck: int = 8, bn_momentum: float = 0.99) -> keras.Model:
    """The audio model; ``n_subjects`` is unused (the paper's speech model has no subject input).

    ``bn_momentum`` is Keras' default; short runs with few batches need a smaller one (e.g. 0.8) or the
    BatchNorm moving statistics used at inference are still near their initial values when training stops.
    """
    if head not in ("sequence", "last"):
        raise ValueError(f"head must be 'sequence' or 'last', got {head!r}")
    spectrogram = keras.Input(shape=input_shapes[INPUT_NAME], name=INPUT_NAME)
    states = keras.layers.Bidirectional(keras.layers.GRU(gru_units, return_sequences=head == "sequence"),
                                        name="bigru")(spectrogram)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="batchnorm")(states)
    if head == "sequence":
        x = keras.layers.TimeDistributed(keras.layers.Dense(bottleneck, activation="linear"), name="bottleneck")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if head == "sequence":
        x = keras.layers.Flatten(name="flatten")(x)
    valence = keras.layers.Dense(output_steps, activation="linear", name="valence")(x)
    return keras.Model(inputs={INPUT_NAME: spectrogram}, outputs=valence, name="audio")
