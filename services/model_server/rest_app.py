"""TF Serving's REST API (port 8501) as a Flask application factory over a :class:`ModelRepository`.

Routes, bodies and error shapes follow TensorFlow Serving's HTTP handler:

* ``GET  /v1/models/<name>[/versions/<n>|/labels/<l>]``           model status (GetModelStatus as JSON)
* ``GET  /v1/models/<name>[/versions/<n>|/labels/<l>]/metadata``  ``{"model_spec", "metadata": {"signature_def"}}``
* ``POST /v1/models/<name>[/versions/<n>|/labels/<l>]:predict``   row (``instances`` -> ``predictions``) or
  columnar (``inputs`` -> ``outputs``) format; ``{"b64": ...}`` for binary strings
* errors: ``{"error": "..."}`` with TF Serving's status-code-to-HTTP mapping (INVALID_ARGUMENT and
  FAILED_PRECONDITION 400, NOT_FOUND 404, UNIMPLEMENTED 501, UNAVAILABLE 503, INTERNAL 500).

JSON numbers are converted to the dtype the signature declares (as TF Serving does); a value that does not
fit (a fraction for an integer input, a string for a number) is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from typing import Any

import numpy as np
from flask import Flask, Response, request
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from services.model_server.grpc_service import metadata_response, status_response
from services.model_server.repository import ModelRepository
from serving.protos import ModelSignature, TensorSpecInfo
from serving.servable import ServableError

log = logging.getLogger(__name__)

HTTP_STATUS = {
    "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503,
    "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}

_SELECTOR = r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
_PREDICT = re.compile(rf"models/(?P<name>[^/:]+){_SELECTOR}:(?P<method>classify|regress|predict)")
_METADATA = re.compile(rf"models/(?P<name>[^/:]+){_SELECTOR}/metadata")
_STATUS = re.compile(rf"models(?:/(?P<name>[^/:]+))?{_SELECTOR}")


def _json(payload: object, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _error(error: ServableError) -> Response:
    return _json({"error": error.message}, HTTP_STATUS.get(error.code, 500))


def _proto_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


# --- JSON -> numpy ------------------------------------------------------------------------------------------
def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _strings(value: object, name: str) -> object:
    """Nested lists of str / {"b64": ...} -> nested lists of bytes."""
    if isinstance(value, list):
        return [_strings(item, name) for item in value]
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise ServableError("INVALID_ARGUMENT", f"input {name!r}: invalid base64 value: {exc}") from exc
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ServableError("INVALID_ARGUMENT", f"input {name!r} expects strings, got JSON value {value!r}")


def _to_array(value: object, spec: TensorSpecInfo) -> np.ndarray:
    """A JSON value as an array of the signature's dtype, refusing lossy conversions."""
    name = spec.name
    if spec.dtype == np.dtype(object):
        strings = _strings(value, name)
        try:
            array = np.empty(np.shape(strings), dtype=object)
        except ValueError as exc:
            raise ServableError("INVALID_ARGUMENT", f"input {name!r} is not a rectangular array: {exc}") from exc
        array[...] = strings
        return array
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise ServableError("INVALID_ARGUMENT", f"input {name!r} is not a rectangular array: {exc}") from exc
    kind = array.dtype.kind
    target = spec.dtype
    if array.size == 0:
        return array.astype(target)
    if kind not in "biuf":
        raise ServableError("INVALID_ARGUMENT",
                            f"input {name!r} must hold numbers for {spec.describe()}, got JSON of kind {array.dtype}")
    if target.kind == "b" and kind != "b":
        raise ServableError("INVALID_ARGUMENT", f"input {name!r} expects true/false values ({spec.describe()})")
    if target.kind in "iu":
        if kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise ServableError("INVALID_ARGUMENT",
                                f"input {name!r} expects integers ({spec.describe()}), got a fractional value")
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise ServableError("INVALID_ARGUMENT", f"input {name!r}: a value is out of range for {target}")
    return array.astype(target)


def _columns(body: dict[str, Any], signature: ModelSignature) -> tuple[dict[str, object], bool]:
    """Raw JSON values per input name and whether the request used the row ("instances") format."""
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise ServableError("INVALID_ARGUMENT", "Not allowed to have both 'instances' and 'inputs' keys" if has_inputs
                            else "Missing 'inputs' or 'instances' key")
    names = list(signature.inputs)
    if has_instances:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ServableError("INVALID_ARGUMENT", "'instances' must be a non-empty JSON list")
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if not named:
            if len(names) != 1:
                raise ServableError("INVALID_ARGUMENT",
                                    f"instances must be JSON objects keyed by input name since signature "
                                    f"{signature.signature!r} has several inputs: {signature.describe_inputs()}")
            return {names[0]: instances}, True
        columns: dict[str, list[object]] = {}
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict) or set(instance) != set(instances[0]):
                raise ServableError("INVALID_ARGUMENT",
                                    f"instance {index} does not have the same keys as instance 0 "
                                    f"({sorted(instances[0])})")
            for key, value in instance.items():
                columns.setdefault(key, []).append(value)
        return dict(columns), True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return dict(inputs), False
    if len(names) != 1:
        raise ServableError("INVALID_ARGUMENT", f"'inputs' must be a JSON object keyed by input name since signature "
                                                f"{signature.signature!r} has several inputs: {signature.describe_inputs()}")
    return {names[0]: inputs}, False


# --- numpy -> JSON ------------------------------------------------------------------------------------------
def _jsonable(array: np.ndarray, name: str) -> object:
    if array.dtype != np.dtype(object) and array.dtype.kind not in "SU":
        return array.tolist()
    binary = name.endswith("_bytes")

    def convert(item: object) -> object:
        if isinstance(item, list):
            return [convert(x) for x in item]
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        if not binary:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(raw).decode("ascii")}

    return convert(array.tolist())


def _predict_payload(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, object]:
    if not row_format:
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            return {"outputs": _jsonable(array, name)}
        return {"outputs": {name: _jsonable(array, name) for name, array in outputs.items()}}
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        return {"predictions": _jsonable(array, name)}
    batch = {array.shape[0] if array.ndim else -1 for array in outputs.values()}
    if len(batch) != 1 or -1 in batch:
        raise ServableError("INVALID_ARGUMENT", "outputs have different batch sizes: use the columnar 'inputs' format")
    rows: list[dict[str, object]] = [{} for _ in range(batch.pop())]
    for name, array in outputs.items():
        for row, value in zip(rows, _jsonable(array, name), strict=True):
            row[name] = value
    return {"predictions": rows}


# --- application --------------------------------------------------------------------------------------------
def create_app(repository: ModelRepository) -> Flask:
    """The REST application; every route answers JSON, errors as ``{"error": ...}``."""
    app = Flask(__name__)
    app.config["repository"] = repository

    def predict(name: str, version: int | None, label: str | None) -> Response:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError as exc:
            raise ServableError("INVALID_ARGUMENT", f"JSON Parse error: {exc}") from exc
        if not isinstance(body, dict):
            raise ServableError("INVALID_ARGUMENT", "the request body must be a JSON object")
        servable = repository.servable(name, version, label)
        signature = servable.signature(str(body.get("signature_name") or ""))
        columns, row_format = _columns(body, signature)
        unknown = sorted(set(columns) - set(signature.inputs))
        if unknown:
            raise ServableError("INVALID_ARGUMENT",
                                f"unknown input(s) {unknown} for signature {signature.signature!r} of model "
                                f"{name!r}; expected inputs: {signature.describe_inputs()}")
        inputs = {key: _to_array(value, signature.inputs[key]) for key, value in columns.items()}
        outputs = servable.run(signature.signature, inputs)
        return _json(_predict_payload(outputs, row_format))

    @app.route("/v1/<path:path>", methods=["GET", "POST"])
    def dispatch(path: str) -> Response:
        try:
            if request.method == "POST" and (match := _PREDICT.fullmatch(path)):
                if match["method"] != "predict":
                    raise ServableError("UNIMPLEMENTED", f"{match['method']} is not implemented by this model server")
                version = int(match["version"]) if match["version"] else None
                return predict(match["name"], version, match["label"])
            if request.method == "GET" and (match := _METADATA.fullmatch(path)):
                version = int(match["version"]) if match["version"] else None
                response = metadata_response(repository, match["name"], version, match["label"])
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                return _json({"model_spec": _proto_json(response.model_spec),
                              "metadata": {"signature_def": _proto_json(signature_map)}})
            if request.method == "GET" and (match := _STATUS.fullmatch(path)):
                if not match["name"]:
                    raise ServableError("INVALID_ARGUMENT", "Missing model name in request.")
                if match["label"]:
                    version = repository.servable(match["name"], None, match["label"]).version
                else:
                    version = int(match["version"]) if match["version"] else None
                return _json(_proto_json(status_response(repository, match["name"], version)))
            raise ServableError("INVALID_ARGUMENT", f"Malformed request: {request.method} /v1/{path}")
        except ServableError as error:
            log.info("rest request refused", extra={"path": path, "code": error.code, "error": error.message})
            return _error(error)

    return app
