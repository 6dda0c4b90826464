"""Liveness and readiness: ``/healthz`` (the process answers) and ``/readyz`` (it can do work).

Ready means Redis answers, the job storage can be used (:meth:`jobs.storage.JobStorage.check`: the
bucket answers to our credentials) and every modality's model server reports an AVAILABLE version through
TF Serving's gRPC ``ModelService/GetModelStatus`` (the same call works against ``tensorflow/serving`` and
our own model server). The wire messages come from :mod:`serving.protos`, so the gateway never
imports TensorFlow (~600 MB) just to ask a status.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import redis
from flask import Blueprint, Response, current_app, jsonify

from gateway.server import native_thread_pool
from jobs.storage import JobStorage, StorageUnavailable
from serving import protos as wire
from shared.settings import MODALITIES, Settings

bp = Blueprint("health", __name__)


def model_server_status(address: str, model: str, *, timeout_s: float = 2.0) -> dict[str, Any]:
    """``{"ready", "address", "versions" | "error"}`` of one model on one gRPC model server."""
    request = wire.GetModelStatusRequest()
    request.model_spec.name = model
    try:
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(wire.GET_MODEL_STATUS_METHOD,
                                       request_serializer=wire.GetModelStatusRequest.SerializeToString,
                                       response_deserializer=wire.GetModelStatusResponse.FromString)
            response = call(request, timeout=timeout_s)
    except grpc.RpcError as exc:
        return {"ready": False, "address": address, "error": f"{exc.code().name}: {exc.details()}"}
    versions = {str(s.version): wire.STATE_NAMES.get(s.state, str(s.state)) for s in response.model_version_status}
    ready = any(state == "AVAILABLE" for state in versions.values())
    return {"ready": ready, "address": address, "versions": versions}


def readiness(settings: Settings, client: redis.Redis, storage: JobStorage | None = None) -> dict[str, Any]:
    started = time.monotonic()
    checks: dict[str, Any] = {}
    try:
        client.ping()
        checks["redis"] = {"ready": True}
    except redis.RedisError as exc:
        checks["redis"] = {"ready": False, "error": str(exc)}
    if storage is not None:
        try:
            storage.check()
            checks["storage"] = {"ready": True, "backend": settings.storage_backend}
        except (StorageUnavailable, OSError) as exc:
            checks["storage"] = {"ready": False, "backend": settings.storage_backend, "error": str(exc)}
    with native_thread_pool(len(MODALITIES)) as pool:  # gRPC blocks: never in the event loop
        futures = {name: pool.submit(model_server_status, settings.model_server_for(name), name)
                   for name in MODALITIES}
        for name, future in futures.items():
            checks[f"model:{name}"] = future.result()
    ready = all(check["ready"] for check in checks.values())
    return {"ready": ready, "checks": checks, "seconds": round(time.monotonic() - started, 3)}


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    report = readiness(current_app.config["EMPATHY_SETTINGS"], current_app.extensions["empathy_redis"],
                       current_app.extensions["empathy_storage"])
    return jsonify(report), 200 if report["ready"] else 503
