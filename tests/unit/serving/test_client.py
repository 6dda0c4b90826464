"""serving.client and its TensorFlow-free wire messages, against our model server and TF itself."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from services.model_server.repository import ModelConfig, ModelRepository
from services.model_server.server import ModelServer
from serving import protos as wire
from serving.client import (
    GrpcPredictor,
    LocalPredictor,
    ModelUnavailableError,
    SignatureMismatchError,
    open_model,
)
from serving.model_store import ModelNotFoundError
from shared.ports import free_port
from shared.settings import Settings
from tests import REPO
from tests.serving_helpers import export_tiny_model, keras_predict, sample_inputs, wait_for

ATOL = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("exports")
    return {"path": root / "v1", "model": export_tiny_model(root / "v1", seed=3)}


@pytest.fixture
def models_dir(tmp_path: Path, exported: dict) -> Path:
    """``<tmp>/models/tiny/1``: the layout open_model and the server share."""
    root = tmp_path / "models"
    shutil.copytree(exported["path"], root / "tiny" / "1")
    return root


@pytest.fixture
def server(models_dir: Path):
    repository = ModelRepository([ModelConfig("tiny", models_dir / "tiny")], poll_wait_s=0.1)
    with ModelServer(repository, grpc_port=None, rest_port=0, host="127.0.0.1") as running:
        yield running


def _predictor(server: ModelServer, **kwargs) -> GrpcPredictor:
    options = {"timeout_s": 10.0, "retries": 2, "batch_size": 64, "backoff_s": 0.05} | kwargs
    return GrpcPredictor(f"127.0.0.1:{server.grpc_port}", options.pop("model", "tiny"), **options)


# --- wire compatibility -------------------------------------------------------------------------------------
ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    np.array([[1.5, -2.25]], dtype=np.float64),
    np.array([-3, 0, 7], dtype=np.int32),
    np.array([[2**40, -1]], dtype=np.int64),
    np.array([0, 255], dtype=np.uint8),
    np.array([1.5, -0.25, 65504], dtype=np.float16),
    np.array([True, False, True]),
    np.array([1 + 2j, -3j], dtype=np.complex64),
    np.array([b"ab", b"", "\u00e9".encode()], dtype=object),
    np.zeros((0, 4), dtype=np.float32),
    np.float32(2.5),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{np.asarray(a).dtype}{np.shape(a)}")
def test_codec_matches_tensorflow_both_ways(array: np.ndarray) -> None:
    for as_fields in (False, True):
        ours = wire.ndarray_to_tensor_proto(array, as_fields=as_fields)
        decoded_by_tf = tf.make_ndarray(tensor_pb2.TensorProto.FromString(ours.SerializeToString()))
        np.testing.assert_array_equal(decoded_by_tf, array)
        assert decoded_by_tf.dtype == np.asarray(array).dtype or np.asarray(array).dtype == object
    made_by_tf = tf.make_tensor_proto(array)
    decoded = wire.tensor_proto_to_ndarray(wire.TensorProto.FromString(made_by_tf.SerializeToString()))
    np.testing.assert_array_equal(decoded, array)
    assert decoded.shape == np.shape(array)


def test_codec_expands_a_constant_tail_like_tensorflow() -> None:
    proto = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum, float_val=[1.0, 7.0])
    for size in (2, 3, 4):
        proto.tensor_shape.dim.add(size=size)
    decoded = wire.tensor_proto_to_ndarray(wire.TensorProto.FromString(proto.SerializeToString()))
    np.testing.assert_array_equal(decoded, tf.make_ndarray(proto))
    assert decoded.shape == (2, 3, 4) and decoded[0, 0, 0] == 1.0 and np.all(decoded.ravel()[1:] == 7.0)
    with pytest.raises(ValueError, match="bytes of content"):
        wire.tensor_proto_to_ndarray(wire.TensorProto(dtype=1, tensor_content=b"\0" * 6))


def test_wire_messages_are_byte_compatible_with_tensorflow_serving() -> None:
    ours = wire.PredictRequest(output_filter=["output_0"])
    ours.model_spec.name, ours.model_spec.signature_name = "audio", "serving_default"
    ours.model_spec.version.value = 7
    wire.ndarray_to_tensor_proto(np.ones((2, 3), np.float32), ours.inputs["x"])
    real = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert (real.model_spec.name, real.model_spec.version.value, list(real.output_filter)) == ("audio", 7, ["output_0"])
    np.testing.assert_array_equal(tf.make_ndarray(real.inputs["x"]), np.ones((2, 3)))
    assert wire.PredictRequest.FromString(real.SerializeToString()) == ours

    response = predict_pb2.PredictResponse()
    response.model_spec.version.value = 4
    response.outputs["y"].CopyFrom(tf.make_tensor_proto(np.array([[0.5]], np.float32)))
    mine = wire.PredictResponse.FromString(response.SerializeToString())
    assert mine.model_spec.version.value == 4
    np.testing.assert_array_equal(wire.tensor_proto_to_ndarray(mine.outputs["y"]), [[0.5]])

    status = get_model_status_pb2.GetModelStatusResponse()
    entry = status.model_version_status.add(version=3, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    entry.status.error_message = "fine"
    mine_status = wire.GetModelStatusResponse.FromString(status.SerializeToString())
    assert [(s.version, s.state, s.status.error_message) for s in mine_status.model_version_status] == [
        (3, wire.STATE_AVAILABLE, "fine")]

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    info = signature_map.signature_def["serving_default"].inputs["x"]
    info.dtype = tf.float32.as_datatype_enum
    info.tensor_shape.dim.add(size=-1)
    metadata = get_model_metadata_pb2.GetModelMetadataResponse()
    metadata.metadata["signature_def"].Pack(signature_map)
    mine_metadata = wire.GetModelMetadataResponse.FromString(metadata.SerializeToString())
    assert mine_metadata.metadata["signature_def"].type_url == wire.SIGNATURE_DEF_MAP_TYPE_URL
    mine_map = wire.SignatureDefMap.FromString(mine_metadata.metadata["signature_def"].value)
    spec = wire.signature_from_def(mine_map.signature_def["serving_default"], model="m", version=1,
                                   signature="serving_default").inputs["x"]
    assert spec == wire.TensorSpecInfo("x", np.dtype(np.float32), (None,))


def test_importing_the_client_does_not_import_tensorflow() -> None:
    code = "import sys, serving.client; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- GrpcPredictor ------------------------------------------------------------------------------------------
def test_grpc_predictor_batches_many_windows_in_order(server: ModelServer, exported: dict,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    inputs = sample_inputs(1000)
    with _predictor(server) as predictor, caplog.at_level(logging.DEBUG, logger="services.model_server.grpc_service"):
        got = predictor.predict(inputs)
    sizes = [r.windows["x"] for r in caplog.records if r.getMessage() == "predict"]
    assert sizes == [64] * 15 + [40]
    assert got.shape == (1000, 1)
    np.testing.assert_allclose(got, keras_predict(exported["model"], inputs), atol=ATOL)
    assert predictor.last_version == 1


def test_grpc_predictor_metadata_equals_local_predictor_and_so_do_predictions(server: ModelServer,
                                                                             models_dir: Path) -> None:
    inputs = sample_inputs(130)
    local = LocalPredictor(models_dir / "tiny" / "1", batch_size=50)
    with _predictor(server, batch_size=32) as remote:
        assert remote.metadata() == local.metadata()
        assert remote.metadata().describe_inputs() == "subject: int32 (None,), x: float32 (None, 4)"
        np.testing.assert_allclose(remote.predict(inputs), local.predict(inputs), atol=ATOL)
    assert local.last_version == 1


def test_inputs_are_cast_losslessly_or_refused_with_the_expected_signature(server: ModelServer) -> None:
    inputs = sample_inputs(5)
    with _predictor(server) as predictor:
        reference = predictor.predict(inputs)
        widened = {"x": inputs["x"].astype(np.float64), "subject": inputs["subject"].astype(np.int64)}
        np.testing.assert_allclose(predictor.predict(widened), reference, atol=ATOL)
        assert predictor.predict({"x": inputs["x"][:0], "subject": inputs["subject"][:0]}).shape == (0, 1)

        with pytest.raises(SignatureMismatchError, match="cannot become int32") as info:
            predictor.predict({"x": inputs["x"], "subject": inputs["subject"] + 0.5})
        assert set(info.value.expected) == {"x", "subject"}
        assert "x: float32 (None, 4)" in str(info.value)
        with pytest.raises(SignatureMismatchError, match=r"unknown inputs \['frames'\], missing inputs \['x'\]"):
            predictor.predict({"frames": inputs["x"], "subject": inputs["subject"]})
        with pytest.raises(SignatureMismatchError, match=r"shape \(5, 3\)"):
            predictor.predict({"x": inputs["x"][:, :3], "subject": inputs["subject"]})
        with pytest.raises(SignatureMismatchError, match="same number of windows"):
            predictor.predict({"x": inputs["x"], "subject": inputs["subject"][:4]})
    with _predictor(server, signature="nope") as predictor, pytest.raises(SignatureMismatchError, match="nope"):
        predictor.predict(inputs)


def test_unknown_model_is_unavailable_at_once_without_retries(server: ModelServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    started = time.monotonic()
    with _predictor(server, model="nope", retries=5, backoff_s=1.0) as predictor:
        with pytest.raises(ModelUnavailableError, match="'nope'.*not served"):
            predictor.predict(sample_inputs(2))
    assert time.monotonic() - started < 1.0
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_client_retries_until_a_late_server_starts(models_dir: Path, exported: dict,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    inputs = sample_inputs(10)
    outcome: dict[str, object] = {}
    predictor = GrpcPredictor(f"127.0.0.1:{port}", "tiny", timeout_s=5.0, retries=8, backoff_s=0.1,
                              max_backoff_s=0.5, batch_size=4)

    def call() -> None:
        try:
            outcome["result"] = predictor.predict(inputs)
        except Exception as exc:  # surfaced by the assertion below
            outcome["error"] = exc

    with caplog.at_level(logging.WARNING, logger="serving.client"):
        thread = threading.Thread(target=call)
        thread.start()
        wait_for(lambda: any("retrying" in r.getMessage() for r in caplog.records), timeout_s=10)
        repository = ModelRepository([ModelConfig("tiny", models_dir / "tiny")], poll_wait_s=0)
        with ModelServer(repository, grpc_port=port, rest_port=0, host="127.0.0.1"):
            thread.join(timeout=30)
    predictor.close()
    assert "error" not in outcome, outcome.get("error")
    np.testing.assert_allclose(outcome["result"], keras_predict(exported["model"], inputs), atol=ATOL)


def test_client_gives_up_after_the_configured_retries_when_nothing_listens(caplog: pytest.LogCaptureFixture) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="serving.client"):
        with GrpcPredictor(address, "tiny", timeout_s=2.0, retries=2, backoff_s=0.05) as predictor:
            with pytest.raises(ModelUnavailableError, match=f"no model server answered at {address} after 3 attempts"):
                predictor.predict(sample_inputs(3))
    assert time.monotonic() - started < 5
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2


def test_wait_until_available_sees_a_version_published_later(tmp_path: Path, exported: dict) -> None:
    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True)
    repository = ModelRepository([ModelConfig("tiny", base)], poll_wait_s=0.1)
    with ModelServer(repository, grpc_port=None, rest_port=0, host="127.0.0.1") as running:
        with _predictor(running) as predictor:
            with pytest.raises(ModelUnavailableError, match="not available within 0.3 s"):
                predictor.wait_until_available(0.3)
            timer = threading.Timer(0.3, shutil.copytree, (exported["path"], base / "1"))
            timer.start()
            assert predictor.wait_until_available(15) == 1
            timer.join()
            assert predictor.predict(sample_inputs(2)).shape == (2, 1)


def test_a_patient_predictor_waits_for_its_model_to_load(tmp_path: Path, exported: dict) -> None:
    """With ``load_timeout_s`` a call that finds the model missing waits for it instead of failing at once."""
    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True)
    repository = ModelRepository([ModelConfig("tiny", base)], poll_wait_s=0.1)
    with ModelServer(repository, grpc_port=None, rest_port=0, host="127.0.0.1") as running:
        with _predictor(running, retries=0) as impatient, _predictor(running, retries=0, load_timeout_s=0.3) as short:
            with pytest.raises(ModelUnavailableError, match="is not served"):
                impatient.predict(sample_inputs(2))
            with pytest.raises(ModelUnavailableError, match="; then .*not available within 0.3 s"):
                short.predict(sample_inputs(2))
        with _predictor(running, retries=0, load_timeout_s=15) as patient:
            timer = threading.Timer(0.3, shutil.copytree, (exported["path"], base / "1"))
            timer.start()
            np.testing.assert_allclose(patient.predict(sample_inputs(3)),
                                       keras_predict(exported["model"], sample_inputs(3)), atol=ATOL)
            timer.join()
            assert patient.last_version == 1


def test_open_model_gives_the_version_its_metadata_and_a_predictor_for_it(
        models_dir: Path, exported: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(models_dir / "tiny" / "1", models_dir / "tiny" / "2")
    for version in (1, 2):
        (models_dir / "tiny" / str(version) / "metadata.json").write_text(json.dumps({"version": version}))
    settings = Settings(model_server="serving-host:8500", batch_size=17, model_server_retries=5,
                        model_server_timeout_s=3.0, model_server_backoff_s=0.25, model_load_timeout_s=40.0,
                        models_dir=models_dir)
    local = open_model("tiny", settings, local=True)
    assert (local.version, local.metadata) == (2, {"version": 2})
    assert isinstance(local.predictor, LocalPredictor) and local.predictor.batch_size == 17
    assert local.predictor.path == models_dir / "tiny" / "2"
    np.testing.assert_allclose(local.predictor.predict(sample_inputs(3)),
                               keras_predict(exported["model"], sample_inputs(3)), atol=ATOL)
    older = open_model("tiny", settings, models_dir=models_dir, version=1, local=True)
    assert older.metadata == {"version": 1} and older.predictor.path == models_dir / "tiny" / "1"
    with pytest.raises(ModelNotFoundError, match="no SavedModel version"):
        open_model("face", settings, local=True)

    monkeypatch.setenv("EMPATHY_TINY_MODEL_SERVER", "tiny-serving:8500")
    remote = open_model("tiny", settings)
    assert remote.version == 2 and remote.metadata == {"version": 2}
    grpc_predictor = remote.predictor
    assert isinstance(grpc_predictor, GrpcPredictor)
    assert (grpc_predictor.address, grpc_predictor.model_name, grpc_predictor.version, grpc_predictor.retries,
            grpc_predictor.timeout_s, grpc_predictor.backoff_s, grpc_predictor.load_timeout_s,
            grpc_predictor.batch_size) == ("tiny-serving:8500", "tiny", 2, 5, 3.0, 0.25, 40.0, 17)
    grpc_predictor.close()
