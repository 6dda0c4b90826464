"""Model pieces: CCC loss, attention, subject dropout, paper defaults, SavedModel export fidelity."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from shared.ccc import ccc
from training.models import SPECS, get_spec
from training.models.common import AttentionPooling, SubjectDropout, ccc_loss


def test_ccc_loss_is_one_minus_the_challenge_ccc() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((6, 20)).astype(np.float32)
    p = (0.5 * y + 0.3 * rng.standard_normal((6, 20)) + 0.2).astype(np.float32)
    assert float(ccc_loss(y, p)) == pytest.approx(1 - ccc(y.ravel(), p.ravel()), abs=1e-5)


def test_attention_is_the_papers_softmax_weighted_sum() -> None:
    layer = AttentionPooling()
    h = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    out = np.asarray(layer(h))
    w, b = (np.asarray(v) for v in layer.get_weights())
    z = h @ w + b
    alpha = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, (alpha[..., None] * h).sum(axis=1), rtol=1e-5)


def test_subject_dropout_trains_the_unknown_row_and_is_identity_at_inference() -> None:
    subjects = np.arange(1, 1001, dtype=np.int32) % 7 + 1
    layer = SubjectDropout(0.3, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(subjects, training=False)), subjects)
    dropped = np.asarray(layer(subjects, training=True))
    assert 0.2 < (dropped == 0).mean() < 0.4
    assert ((dropped == 0) | (dropped == subjects)).all()


def test_default_hyperparameters_are_the_papers() -> None:
    audio, text = get_spec("audio"), get_spec("text")
    assert audio.batch_size == 50
    hp = audio.default_hparams()
    assert (hp["gru_units"], hp["dropout"], hp["output_steps"]) == (250, 0.3, 200)
    assert text.default_hparams()["subject_dim"] == 2
    assert set(SPECS) == {"audio", "text", "face", "landmarks", "body"}
    model = audio.build({"spectrogram": (800, 129)}, 0)
    assert model.output_shape == (None, 200)
    assert model.get_layer("bigru").forward_layer.units == 250


def _export_roundtrip(model: keras.Model, inputs: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray]:
    model.export(str(path), format="tf_saved_model", verbose=False)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == set(inputs), "input names are the Windows keys"
    exported = serve(**{k: tf.constant(v) for k, v in inputs.items()})["output_0"].numpy()
    return exported, model.predict(inputs, verbose=0)


def test_text_model_with_attention_survives_savedmodel_export(tmp_path: Path) -> None:
    model = get_spec("text").build({"words": (100, 11)}, 2, lstm_units=8)
    rng = np.random.default_rng(2)
    inputs = {"words": rng.standard_normal((4, 100, 11)).astype(np.float32),
              "subject": np.array([0, 1, 2, 1], np.int32)}
    exported, expected = _export_roundtrip(model, inputs, tmp_path / "text")
    np.testing.assert_allclose(exported, expected, rtol=1e-4, atol=1e-5)
    assert np.std(expected) > 0


def test_audio_model_survives_savedmodel_export(tmp_path: Path) -> None:
    model = get_spec("audio").build({"spectrogram": (800, 129)}, 0, gru_units=4)
    inputs = {"spectrogram": np.random.default_rng(3).standard_normal((2, 800, 129)).astype(np.float32)}
    exported, expected = _export_roundtrip(model, inputs, tmp_path / "audio")
    assert exported.shape == (2, 200)
    np.testing.assert_allclose(exported, expected, rtol=1e-4, atol=1e-5)
