"""Our model server against TF Serving's contract, checked with the stock TF Serving client classes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from services.model_server.repository import (
    ModelConfig,
    ModelRepository,
    VersionPolicy,
    parse_model_config_text,
)
from services.model_server.rest_app import create_app
from services.model_server.server import ModelServer
from shared.ports import free_port
from tests import REPO
from tests.serving_helpers import export_tiny_model, keras_predict, sample_inputs, wait_for

ATOL = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Version 1 and a differently initialised version 2 of the tiny model, exported once per module."""
    root = tmp_path_factory.mktemp("exports")
    model1 = export_tiny_model(root / "v1", seed=1)
    model2 = export_tiny_model(root / "v2", seed=2)
    return {"v1": root / "v1", "v2": root / "v2", "model1": model1, "model2": model2}


@pytest.fixture
def base_path(tmp_path: Path, exported: dict) -> Path:
    """A model directory ``<tmp>/models/tiny`` holding version 1 only."""
    path = tmp_path / "models" / "tiny"
    path.mkdir(parents=True)
    shutil.copytree(exported["v1"], path / "1")
    return path


@pytest.fixture
def server(base_path: Path):
    repository = ModelRepository([ModelConfig("tiny", base_path)], poll_wait_s=0.1)
    with ModelServer(repository, grpc_port=None, rest_port=None, host="127.0.0.1") as running:
        yield running


@pytest.fixture
def channel(server: ModelServer):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
        yield chan


def _predict_request(inputs: dict[str, np.ndarray], model: str = "tiny", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def _status(base_url: str) -> dict[str, str]:
    body = requests.get(base_url, timeout=5).json()
    return {entry["version"]: entry["state"] for entry in body.get("model_version_status", [])}


# --- gRPC ---------------------------------------------------------------------------------------------------
def test_stock_grpc_client_gets_the_keras_numbers(channel: grpc.Channel, exported: dict) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    inputs = sample_inputs(7)
    response = stub.Predict(_predict_request(inputs), timeout=10)
    assert response.model_spec.name == "tiny"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs) == ["output_0"]
    # TF Serving answers in the typed fields (AsProtoField), which clients reading float_val rely on.
    assert len(response.outputs["output_0"].float_val) == 7
    got = tf.make_ndarray(response.outputs["output_0"])
    np.testing.assert_allclose(got, keras_predict(exported["model1"], inputs), atol=ATOL)


def test_grpc_metadata_and_status_answer(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tiny"
    response = stub.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    serving = signature_map.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["x"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1, 4]
    assert serving.inputs["subject"].dtype == tf.int32.as_datatype_enum
    assert set(serving.outputs) == {"output_0"}

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "tiny"
    status = status_stub.GetModelStatus(status_request, timeout=10)
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]


def _rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


def test_grpc_errors_carry_tf_serving_codes_and_clear_messages(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    inputs = sample_inputs(3)

    error = _rpc_error(stub.Predict, _predict_request(inputs, model="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "nope" in error.details()

    error = _rpc_error(stub.Predict, _predict_request(inputs, version=9))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "Specific(tiny, 9)" in error.details()

    error = _rpc_error(stub.Predict, _predict_request({"y": inputs["x"], "subject": inputs["subject"]}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown input(s) ['y']" in error.details() and "missing input(s) ['x']" in error.details()
    assert "x: float32 (None, 4)" in error.details()

    error = _rpc_error(stub.Predict, _predict_request({"x": inputs["x"].astype(np.float64),
                                                      "subject": inputs["subject"]}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dtype float64" in error.details() and "float32" in error.details()

    error = _rpc_error(stub.Predict, _predict_request({"x": inputs["x"][:, :3], "subject": inputs["subject"]}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "shape (3, 3)" in error.details()

    error = _rpc_error(stub.Predict, _predict_request(inputs, signature_name="nope"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and '"nope" not found' in error.details()

    error = _rpc_error(stub.Classify, classification_pb2.ClassificationRequest())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tiny"
    error = _rpc_error(stub.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata_field" in error.details()

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "nope"
    error = _rpc_error(model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus, status_request)
    assert error.code() == grpc.StatusCode.NOT_FOUND


# --- REST ---------------------------------------------------------------------------------------------------
@pytest.fixture
def rest(base_path: Path):
    repository = ModelRepository([ModelConfig("tiny", base_path)], poll_wait_s=0)
    repository.start()
    return create_app(repository).test_client()


def test_rest_status_metadata_and_predict_in_both_formats(rest, exported: dict) -> None:
    expected_status = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert rest.get("/v1/models/tiny").get_json() == expected_status
    assert rest.get("/v1/models/tiny/versions/1").get_json() == expected_status

    metadata = rest.get("/v1/models/tiny/metadata").get_json()
    assert metadata["model_spec"] == {"name": "tiny", "version": "1", "signature_name": ""}
    serving = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert serving["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert serving["inputs"]["x"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "4", "name": ""}]
    assert serving["method_name"] == "tensorflow/serving/predict"

    inputs = sample_inputs(5)
    want = keras_predict(exported["model1"], inputs)
    instances = [{"x": row.tolist(), "subject": int(s)} for row, s in zip(inputs["x"], inputs["subject"], strict=True)]
    row = rest.post("/v1/models/tiny:predict", json={"instances": instances})
    assert row.status_code == 200
    np.testing.assert_allclose(np.array(row.get_json()["predictions"]), want, atol=ATOL)

    columnar = rest.post("/v1/models/tiny/versions/1:predict", json={
        "signature_name": "serving_default",
        "inputs": {"x": inputs["x"].tolist(), "subject": inputs["subject"].tolist()}})
    assert columnar.status_code == 200
    np.testing.assert_allclose(np.array(columnar.get_json()["outputs"]), want, atol=ATOL)


def test_rest_errors_are_json_with_tf_serving_http_codes(rest) -> None:
    good = {"x": [[0.0, 0.0, 0.0, 0.0]], "subject": [1]}
    cases = [
        ("post", "/v1/models/nope:predict", {"inputs": good}, 404, "nope"),
        ("get", "/v1/models/nope", None, 404, "nope"),
        ("get", "/v1/models/tiny/versions/3", None, 404, "version 3"),
        ("get", "/v1/models/tiny/versions/3/metadata", None, 404, "Specific(tiny, 3)"),
        ("post", "/v1/models/tiny:predict", {"inputs": {"y": good["x"], "subject": [1]}}, 400, "unknown input(s) ['y']"),
        ("post", "/v1/models/tiny:predict", {"inputs": {"x": good["x"], "subject": [1.5]}}, 400, "integers"),
        ("post", "/v1/models/tiny:predict", {"inputs": {"x": good["x"], "subject": ["a"]}}, 400, "numbers"),
        ("post", "/v1/models/tiny:predict", {"inputs": {"x": [[0.0, 0.0]], "subject": [1]}}, 400, "shape (1, 2)"),
        ("post", "/v1/models/tiny:predict", {"inputs": good, "instances": [good]}, 400, "both"),
        ("post", "/v1/models/tiny:predict", {"signature_name": "nope", "inputs": good}, 400, "not found"),
        ("post", "/v1/models/tiny:predict", {"instances": [[0.0, 0.0, 0.0, 0.0]]}, 400, "several inputs"),
        ("post", "/v1/models/tiny:classify", {"inputs": good}, 501, "classify"),
        ("get", "/v1/models", None, 400, "Missing model name"),
        ("get", "/v1/somewhere", None, 400, "Malformed request"),
    ]
    for method, url, body, status, message in cases:
        response = getattr(rest, method)(url, json=body) if body is not None else getattr(rest, method)(url)
        assert response.status_code == status, (url, body, response.get_data(as_text=True))
        assert message in response.get_json()["error"], (url, response.get_json())
    broken = rest.post("/v1/models/tiny:predict", data="{not json", content_type="application/json")
    assert broken.status_code == 400 and "JSON" in broken.get_json()["error"]


# --- versions, configuration, process -----------------------------------------------------------------------
def test_new_version_is_served_without_restart_and_removed_one_unloaded(server: ModelServer, base_path: Path,
                                                                      exported: dict) -> None:
    base_url = f"http://127.0.0.1:{server.rest_port}/v1/models/tiny"
    inputs = sample_inputs(4)
    body = {"inputs": {"x": inputs["x"].tolist(), "subject": inputs["subject"].tolist()}}
    assert _status(base_url) == {"1": "AVAILABLE"}

    staging = base_path / ".staging"
    shutil.copytree(exported["v2"], staging)
    staging.rename(base_path / "2")  # atomic publish, as serving.model_store does
    assert wait_for(lambda: _status(base_url) == {"2": "AVAILABLE", "1": "END"})
    served = requests.post(base_url + ":predict", json=body, timeout=10).json()["outputs"]
    np.testing.assert_allclose(np.array(served), keras_predict(exported["model2"], inputs), atol=ATOL)
    assert requests.post(base_url + "/versions/1:predict", json=body, timeout=10).status_code == 404

    shutil.rmtree(base_path / "2")  # the newest version disappears: back to version 1
    assert wait_for(lambda: _status(base_url) == {"2": "END", "1": "AVAILABLE"})
    served = requests.post(base_url + ":predict", json=body, timeout=10).json()["outputs"]
    np.testing.assert_allclose(np.array(served), keras_predict(exported["model1"], inputs), atol=ATOL)


def test_broken_version_is_reported_and_does_not_stop_serving(base_path: Path) -> None:
    broken = base_path / "5"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    repository = ModelRepository([ModelConfig("tiny", base_path, VersionPolicy(kind="all"))], poll_wait_s=0)
    repository.poll_once()
    states = {version: (status.state, status.error_code) for version, status in repository.status("tiny")}
    assert states[1] == (30, "OK")
    assert states[5][0] == 50 and states[5][1] == "UNKNOWN"
    assert "failed to load" in repository.status("tiny", 5)[0][1].error_message
    assert repository.servable("tiny").version == 1


def test_models_dir_mode_picks_up_a_model_created_later(tmp_path: Path, exported: dict) -> None:
    root = tmp_path / "models"
    root.mkdir()
    repository = ModelRepository(models_root=root, poll_wait_s=0)
    repository.poll_once()
    assert repository.model_names() == []
    shutil.copytree(exported["v1"], root / "audio" / "1")
    repository.poll_once()
    assert repository.model_names() == ["audio"]
    assert repository.servable("audio").version == 1


CONFIG = """
model_config_list {
  config { name: "tiny" base_path: "%s" model_platform: "tensorflow"
           model_version_policy { specific { versions: 1 versions: 2 } }
           version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
  config { name: "other" base_path: "/models/other" model_platform: "tensorflow" }
}
"""


def test_model_config_file_is_parsed_and_labels_resolve(base_path: Path, exported: dict) -> None:
    shutil.copytree(exported["v2"], base_path / "2")
    shutil.copytree(exported["v2"], base_path / "3")
    configs = parse_model_config_text(CONFIG % base_path)
    assert [c.name for c in configs] == ["tiny", "other"]
    assert configs[0].policy == VersionPolicy(kind="specific", num_versions=1, versions=(1, 2))
    assert configs[0].labels == {"stable": 1, "canary": 2}
    assert configs[1].policy == VersionPolicy() and configs[1].base_path == Path("/models/other")

    repository = ModelRepository(configs, poll_wait_s=0)
    repository.poll_once()
    assert [v for v, _ in repository.status("tiny")] == [2, 1]  # version 3 is outside the policy
    client = create_app(repository).test_client()
    assert client.get("/v1/models/tiny/labels/stable").get_json()["model_version_status"][0]["version"] == "1"
    assert client.get("/v1/models/tiny/labels/canary/metadata").get_json()["model_spec"]["version"] == "2"
    assert client.get("/v1/models/tiny/labels/nope").status_code == 404

    with pytest.raises(ValueError, match="model_platform"):
        parse_model_config_text('model_config_list { config { name: "a" base_path: "/a" model_platform: "onnx" } }')
    with pytest.raises(ValueError, match="text proto"):
        parse_model_config_text("model_config_list { config { nme: 1 } }")


def test_reload_config_request_replaces_the_served_models(channel: grpc.Channel, base_path: Path) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(f'model_config_list {{ config {{ name: "renamed" base_path: "{base_path}" }} }}', request.config)
    assert stub.HandleReloadConfigRequest(request, timeout=30).status.error_code == 0
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "renamed"
    assert [s.version for s in stub.GetModelStatus(status_request, timeout=10).model_version_status] == [1]
    status_request.model_spec.name = "tiny"  # dropped from the config: unloaded
    assert [s.state for s in stub.GetModelStatus(status_request, timeout=10).model_version_status] == [
        get_model_status_pb2.ModelVersionStatus.END]

    bad = model_management_pb2.ReloadConfigRequest()
    text_format.Parse('model_config_list { config { name: "x" base_path: "/x" model_platform: "onnx" } }', bad.config)
    answer = stub.HandleReloadConfigRequest(bad, timeout=30)
    assert answer.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "model_platform" in answer.status.error_message


def test_cli_process_serves_a_model_config_file_on_both_ports(base_path: Path, tmp_path: Path,
                                                             exported: dict) -> None:
    config = tmp_path / "models.config"
    config.write_text(CONFIG % base_path)
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve-models", "--port", str(grpc_port), "--rest_api_port",
         str(rest_port), "--host", "127.0.0.1", "--model_config_file", str(config),
         "--file_system_poll_wait_seconds", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def ready() -> bool:
            assert process.poll() is None, process.stdout.read()
            try:
                return requests.get(f"http://127.0.0.1:{rest_port}/v1/models/tiny", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, timeout_s=60, interval_s=0.2)
        assert _status(f"http://127.0.0.1:{rest_port}/v1/models/tiny/labels/stable") == {"1": "AVAILABLE"}
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as chan:
            inputs = sample_inputs(3)
            response = prediction_service_pb2_grpc.PredictionServiceStub(chan).Predict(
                _predict_request(inputs, version=1), timeout=10)
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["output_0"]),
                                   keras_predict(exported["model1"], inputs), atol=ATOL)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Running gRPC ModelServer" in output


def test_cli_refuses_a_bad_config_file(tmp_path: Path) -> None:
    from services.model_server.cli import main

    config = tmp_path / "bad.config"
    config.write_text("model_config_list { config { name: 1 ")
    started = time.monotonic()
    assert main(["--model_config_file", str(config), "--port", "0", "--rest_api_port", "0"]) == 2
    assert time.monotonic() - started < 5
