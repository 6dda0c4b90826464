"""TF Serving's gRPC API (PredictionService + ModelService) over a :class:`ModelRepository`.

Uses the real ``tensorflow_serving.apis`` messages and servicer bases, so any TF Serving client (the
stock ``PredictionServiceStub``, ours in ``serving.client``) talks to this server unchanged.
Predict responses carry outputs in the typed fields (``float_val``...), as TF Serving's default
``AsProtoField`` serialisation does; requests are accepted in either encoding.
"""

from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import NoReturn

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from services.model_server.repository import ModelRepository, parse_model_config_text
from serving.protos import ndarray_to_tensor_proto, tensor_proto_to_ndarray
from serving.servable import ServableError

log = logging.getLogger(__name__)

# TF Serving raises gRPC's 4 MiB default to INT32_MAX: a batch of body windows is tens of MB.
MAX_MESSAGE_BYTES = 2**31 - 1


def _requested_version(model_spec: object) -> tuple[int | None, str | None]:
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return int(model_spec.version.value), None
    if choice == "version_label":
        return None, model_spec.version_label
    return None, None


def _abort(context: grpc.ServicerContext, error: ServableError) -> NoReturn:
    """End the RPC with the error's status code (``context.abort`` raises)."""
    context.abort(grpc.StatusCode[error.code], error.message)
    raise AssertionError("unreachable: context.abort raises")


def metadata_response(repository: ModelRepository, name: str, version: int | None,
                      label: str | None) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The served version's whole signature_def map packed as TF Serving does (shared with REST)."""
    servable = repository.servable(name, version, label)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
    response.metadata["signature_def"].Pack(signature_map)
    return response


def status_response(repository: ModelRepository, name: str,
                    version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
    """Every known version's state, newest first (shared with REST)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for number, status in repository.status(name, version):
        entry = response.model_version_status.add(version=number, state=status.state)
        entry.status.error_code = grpc.StatusCode[status.error_code].value[0]
        entry.status.error_message = status.error_message
    return response


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify, Regress and MultiInference answer UNIMPLEMENTED."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        started = time.perf_counter()
        spec = request.model_spec
        version, label = _requested_version(spec)
        try:
            servable = self.repository.servable(spec.name, version, label)
            try:
                inputs = {name: tensor_proto_to_ndarray(proto) for name, proto in request.inputs.items()}
            except ValueError as exc:
                raise ServableError("INVALID_ARGUMENT", f"malformed input tensor: {exc}") from exc
            signature = servable.signature(spec.signature_name)
            outputs = servable.run(signature.signature, inputs, list(request.output_filter))
        except ServableError as error:
            log.info("predict refused", extra={"model": spec.name, "code": error.code, "error": error.message})
            _abort(context, error)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.signature
        for name, array in outputs.items():
            ndarray_to_tensor_proto(array, response.outputs[name], as_fields=True)
        windows = {name: int(array.shape[0]) if array.ndim else 1 for name, array in inputs.items()}
        log.debug("predict", extra={"model": spec.name, "version": servable.version, "windows": windows,
                                    "ms": round((time.perf_counter() - started) * 1000, 2)})
        return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = request.model_spec
        version, label = _requested_version(spec)
        try:
            if not request.metadata_field:
                raise ServableError("INVALID_ARGUMENT",
                                    "GetModelMetadataRequest must specify at least one metadata_field")
            unsupported = [f for f in request.metadata_field if f != "signature_def"]
            if unsupported:
                raise ServableError("INVALID_ARGUMENT", f"Metadata field {unsupported[0]} is not supported "
                                                        "(supported: signature_def)")
            return metadata_response(self.repository, spec.name, version, label)
        except ServableError as error:
            _abort(context, error)

    def _unimplemented(self, request: object, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "only Predict and GetModelMetadata are implemented by this model server")

    Classify = _unimplemented
    Regress = _unimplemented
    MultiInference = _unimplemented


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest (replaces the served model list)."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        version, _ = _requested_version(request.model_spec)
        try:
            return status_response(self.repository, request.model_spec.name, version)
        except ServableError as error:
            _abort(context, error)

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext) -> model_management_pb2.ReloadConfigResponse:
        response = model_management_pb2.ReloadConfigResponse()
        try:
            configs = parse_model_config_text(text_format.MessageToString(request.config))
        except ValueError as exc:
            response.status.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            response.status.error_message = str(exc)
            return response
        self.repository.set_configs(configs)
        self.repository.poll_once()
        log.info("model config reloaded", extra={"models": [c.name for c in configs]})
        return response


def create_grpc_server(repository: ModelRepository, port: int, *, host: str = "0.0.0.0",
                       max_workers: int = 16) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) gRPC server and the port it bound (useful with port 0)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(repository), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(repository), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {host}:{port} (already in use?)")
    return server, bound
