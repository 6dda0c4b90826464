"""The one way the pipeline calls a model: over gRPC (TF Serving or our model server) or in-process.

Both predictors take many windows at once (``{input name: array}``, first axis = window), send them in
batches of ``batch_size`` and return the selected output concatenated in order, so callers never batch.
Inputs are conformed to the signature first: names must match exactly, dtypes are cast only where no
meaning is lost (float64 -> float32, int64 -> int32 when the values fit), ranks and fixed dimensions must
agree; anything else raises :class:`SignatureMismatchError` naming the inputs the model expects.

:class:`GrpcPredictor` speaks TF Serving's PredictionService through the TensorFlow-free messages of
:mod:`serving.protos` (worker processes never import TensorFlow): per-call deadlines, retries with
exponential backoff on UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED only, and the version of the
first batch pinned for the rest of a call, so one video is never scored by two model versions.
:class:`LocalPredictor` loads the SavedModel with TensorFlow for ``empathy analyze``. :func:`open_model` is
the one factory the callers use: the metadata of a model version and a predictor for exactly that version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
import numpy as np

from serving import protos as wire
from serving.protos import ModelSignature, TensorSpecInfo

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED})
_MAX_MESSAGE_BYTES = 2**31 - 1
T = TypeVar("T")


class ServingError(RuntimeError):
    """A model call failed for a reason the caller should report (base of the more specific errors)."""


class ModelUnavailableError(ServingError):
    """No server answers, or it does not serve this model / version (yet): the modality is unavailable."""


class SignatureMismatchError(ServingError):
    """The inputs do not fit the model's signature; ``expected`` lists what the signature wants."""

    def __init__(self, message: str, expected: dict[str, TensorSpecInfo] | None = None) -> None:
        if expected:
            message = f"{message} (expected inputs: {', '.join(s.describe() for s in expected.values())})"
        super().__init__(message)
        self.expected = expected or {}


class Predictor(Protocol):
    """What the pipeline needs from a model, wherever it runs."""

    last_version: int | None

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...

    def metadata(self) -> ModelSignature: ...


# --- input conformance and batching (shared by both predictors) -----------------------------------------
def _conform(name: str, value: np.ndarray, spec: TensorSpecInfo, expected: dict[str, TensorSpecInfo]) -> np.ndarray:
    if not isinstance(value, np.ndarray) and hasattr(value, "shape") and hasattr(value, "__getitem__"):
        # Lazy windows (shared.modalities.frame_windows.LazyWindows): never materialised whole; each batch
        # slice is an ndarray. Checked by their dtype and shape only.
        if np.dtype(value.dtype) != spec.dtype:
            raise SignatureMismatchError(f"input {name!r} has dtype {value.dtype}, expected {spec.dtype}", expected)
        _check_shape(name, tuple(value.shape), spec, expected)
        return value
    array = np.asarray(value)
    if spec.dtype == np.dtype(object):
        if array.dtype.kind not in "OSU":
            raise SignatureMismatchError(f"input {name!r} must hold strings, got {array.dtype}", expected)
    elif array.dtype != spec.dtype:
        lossless_kind = np.can_cast(array.dtype, spec.dtype, casting="same_kind") and (
            array.dtype.kind != "b" or spec.dtype.kind == "b")
        if not lossless_kind:
            raise SignatureMismatchError(f"input {name!r} has dtype {array.dtype}, which cannot become "
                                         f"{spec.dtype} without loss", expected)
        if spec.dtype.kind in "iu" and array.size:
            info = np.iinfo(spec.dtype)
            if array.min() < info.min or array.max() > info.max:
                raise SignatureMismatchError(f"input {name!r} has values outside the {spec.dtype} range", expected)
        array = array.astype(spec.dtype)
    _check_shape(name, tuple(array.shape), spec, expected)
    return array


def _check_shape(name: str, shape: tuple[int, ...], spec: TensorSpecInfo, expected: dict[str, TensorSpecInfo]) -> None:
    if spec.shape is not None:
        fits = len(spec.shape) == len(shape) and all(
            want is None or want == got for want, got in zip(spec.shape, shape, strict=True))
        if not fits:
            raise SignatureMismatchError(f"input {name!r} has shape {shape}", expected)


def conform_inputs(inputs: dict[str, np.ndarray], signature: ModelSignature) -> dict[str, np.ndarray]:
    """Inputs checked against (and losslessly cast to) the signature, all with the same number of windows."""
    expected = signature.inputs
    unknown, missing = sorted(set(inputs) - set(expected)), sorted(set(expected) - set(inputs))
    if unknown or missing:
        raise SignatureMismatchError(
            f"model {signature.model!r} signature {signature.signature!r}: unknown inputs {unknown}, "
            f"missing inputs {missing}", expected)
    arrays = {name: _conform(name, inputs[name], expected[name], expected) for name in expected}
    lengths = {name: array.shape[0] if array.ndim else None for name, array in arrays.items()}
    if None in lengths.values() or len(set(lengths.values())) > 1:
        raise SignatureMismatchError(f"every input needs the same number of windows on axis 0, got {lengths}",
                                     expected)
    return arrays


def _output_name(signature: ModelSignature, output: str | None) -> str:
    if output is not None:
        if output not in signature.outputs:
            raise SignatureMismatchError(f"model {signature.model!r} has no output {output!r}; "
                                         f"outputs: {sorted(signature.outputs)}")
        return output
    if len(signature.outputs) != 1:
        raise SignatureMismatchError(f"model {signature.model!r} has outputs {sorted(signature.outputs)}: "
                                     "choose one with output=")
    return next(iter(signature.outputs))


def _empty_output(signature: ModelSignature, output: str) -> np.ndarray:
    spec = signature.outputs[output]
    shape = (0,) + tuple(d or 0 for d in (spec.shape or (None,))[1:])
    return np.empty(shape, dtype=spec.dtype)


def _max_batch_bytes(max_batch_mb: float | None) -> int:
    """The byte cap of one model call: the argument (``open_model`` passes ``EMPATHY_MAX_BATCH_MB``), else
    that setting's documented default; the environment is read by the caller, not here."""
    if max_batch_mb is None:
        from shared.settings import Settings

        max_batch_mb = Settings().max_batch_mb
    return int(float(max_batch_mb) * 2**20)


def _batch_slices(arrays: dict[str, np.ndarray], batch_size: int, max_batch_bytes: int) -> list[slice]:
    """Consecutive windows per model call: ``batch_size`` at most, and no more input bytes than the cap.

    The cap matters for big windows only (a 16x128x128 float32 body window is 1 MiB): a paper-size 3D ResNet
    needs ~10 MB of activations per window, so 64 of them in one call would take ~0.6 GB more memory, in the
    model server or ``analyze``, for a few percent of speed (measured in docs/benchmarks.md).
    """
    n = next(iter(arrays.values())).shape[0]
    per_window = sum(int(np.prod(a.shape[1:], dtype=np.int64)) * np.dtype(a.dtype).itemsize for a in arrays.values())
    size = max(1, min(int(batch_size), max_batch_bytes // max(per_window, 1)))
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


# run(index of the batch, its inputs, output names) -> {output name: array}
BatchRunner = Callable[[int, dict[str, np.ndarray], list[str]], dict[str, np.ndarray]]


def predict_batched(signature: ModelSignature, inputs: dict[str, np.ndarray], outputs: list[str] | None,
                    run: BatchRunner, *, batch_size: int, max_batch_bytes: int) -> dict[str, np.ndarray]:
    """Conform ``inputs``, call ``run`` on consecutive batches and concatenate each output in window order.

    The one batching path of both predictors; no windows at all give empty outputs of the signature's shape
    without calling the model.
    """
    arrays = conform_inputs(inputs, signature)
    names = list(outputs) if outputs else list(signature.outputs)
    for name in names:
        _output_name(signature, name)
    if next(iter(arrays.values())).shape[0] == 0:
        return {name: _empty_output(signature, name) for name in names}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for index, window in enumerate(_batch_slices(arrays, batch_size, max_batch_bytes)):
        result = run(index, {name: array[window] for name, array in arrays.items()}, names)
        for name in names:
            parts[name].append(result[name])
    return {name: np.concatenate(chunks, axis=0) for name, chunks in parts.items()}


class _BatchedPredictor:
    """What both predictors share: ``predict`` picks the selected output, both calls go through ``_patiently``."""

    output: str | None

    def metadata(self) -> ModelSignature:
        raise NotImplementedError

    def _predict_outputs(self, inputs: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _patiently(self, call: Callable[[], T]) -> T:
        """Run one public call (a gRPC predictor waits for a restarting model server here)."""
        return call()

    def predict_outputs(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """All (or the named) outputs for all windows, batched."""
        return self._patiently(lambda: self._predict_outputs(inputs, outputs))

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The selected output (``output=``, or the only one) for every window, in input order."""
        def selected() -> np.ndarray:
            output = _output_name(self.metadata(), self.output)
            return self._predict_outputs(inputs, [output])[output]

        return self._patiently(selected)


# --- gRPC ------------------------------------------------------------------------------------------------
class _PinnedVersionGone(Exception):
    """The version pinned after the first batch was unloaded mid-call."""


class GrpcPredictor(_BatchedPredictor):
    """A TF Serving PredictionService client for one model (and signature, and output).

    ``load_timeout_s`` > 0: a call that finds no model server after its retries waits that long for the model
    to become AVAILABLE (a restarting server loading its models) and tries once more (:meth:`_patiently`).
    """

    def __init__(self, address: str, model_name: str, *, version: int | None = None,
                 signature: str = DEFAULT_SIGNATURE, output: str | None = None, timeout_s: float = 30.0,
                 retries: int = 3, batch_size: int = 64, backoff_s: float = 0.2, max_backoff_s: float = 5.0,
                 max_batch_mb: float | None = None, load_timeout_s: float = 0.0) -> None:
        self.address, self.model_name, self.version = address, model_name, version
        self.signature, self.output = signature, output
        self.timeout_s, self.retries, self.load_timeout_s = timeout_s, max(0, int(retries)), load_timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.batch_size, self.max_batch_bytes = batch_size, _max_batch_bytes(max_batch_mb)
        self.last_version: int | None = None
        self._signature: ModelSignature | None = None
        # Reconnect quickly: gRPC's default backoff (1 s growing to 120 s) would make every retry of a
        # server that starts a little late fail instantly without even trying to connect.
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ])
        self._predict_rpc = self._channel.unary_unary(
            wire.PREDICT_METHOD, request_serializer=wire.PredictRequest.SerializeToString,
            response_deserializer=wire.PredictResponse.FromString)
        self._metadata_rpc = self._channel.unary_unary(
            wire.GET_MODEL_METADATA_METHOD, request_serializer=wire.GetModelMetadataRequest.SerializeToString,
            response_deserializer=wire.GetModelMetadataResponse.FromString)
        self._status_rpc = self._channel.unary_unary(
            wire.GET_MODEL_STATUS_METHOD, request_serializer=wire.GetModelStatusRequest.SerializeToString,
            response_deserializer=wire.GetModelStatusResponse.FromString)

    def __repr__(self) -> str:
        return f"GrpcPredictor({self.address!r}, {self.model_name!r}, version={self.version})"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls -----------------------------------------------------------------------------------------
    def _describe(self, version: int | None = None) -> str:
        version = self.version if version is None else version
        return f"model {self.model_name!r} ({'latest' if version is None else f'version {version}'}) at {self.address}"

    def _fill_spec(self, spec: object, version: int | None) -> None:
        spec.name = self.model_name
        if version is not None:
            spec.version.value = version

    def _call(self, rpc: grpc.UnaryUnaryMultiCallable, request: object, what: str) -> object:
        """One RPC with the deadline, retried with exponential backoff on transient codes only."""
        for attempt in range(self.retries + 1):
            try:
                return rpc(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE or attempt == self.retries:
                    raise
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                log.warning("model server call failed, retrying", extra={
                    "call": what, "address": self.address, "model": self.model_name, "code": exc.code().name,
                    "attempt": attempt + 1, "retries": self.retries, "delay_s": delay})
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _error(self, exc: grpc.RpcError, what: str, version: int | None = None) -> ServingError:
        code, details = exc.code(), exc.details()
        if code == grpc.StatusCode.UNAVAILABLE:
            return ModelUnavailableError(f"{what}: no model server answered at {self.address} after "
                                         f"{self.retries + 1} attempts ({details})")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ModelUnavailableError(f"{what}: {self._describe(version)} gave no answer within "
                                         f"{self.timeout_s} s, {self.retries + 1} attempts ({details})")
        if code == grpc.StatusCode.NOT_FOUND:
            return ModelUnavailableError(f"{what}: {self._describe(version)} is not served: {details}")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            self._signature = None
            expected = None
            try:
                expected = self.metadata().inputs
            except ServingError:
                pass
            return SignatureMismatchError(f"{what}: {self._describe(version)} refused the request: {details}",
                                          expected)
        return ServingError(f"{what}: {self._describe(version)} failed with {code.name}: {details}")

    # --- public API ------------------------------------------------------------------------------------
    def metadata(self, *, refresh: bool = False) -> ModelSignature:
        """The signature this predictor calls, from GetModelMetadata (cached until refresh or a mismatch)."""
        if self._signature is not None and not refresh:
            return self._signature
        request = wire.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill_spec(request.model_spec, self.version)
        try:
            response = self._call(self._metadata_rpc, request, "GetModelMetadata")
        except grpc.RpcError as exc:
            raise self._error(exc, "GetModelMetadata") from exc
        signature_map = wire.SignatureDefMap.FromString(response.metadata["signature_def"].value)
        if self.signature not in signature_map.signature_def:
            available = sorted(k for k in signature_map.signature_def if not k.startswith("__"))
            raise SignatureMismatchError(f"{self._describe()} has no signature {self.signature!r}; "
                                         f"available: {available}")
        self._signature = wire.signature_from_def(
            signature_map.signature_def[self.signature], model=self.model_name,
            version=int(response.model_spec.version.value), signature=self.signature)
        return self._signature

    def wait_until_available(self, timeout_s: float) -> int:
        """Block until the model (or the pinned version) is AVAILABLE; returns the newest such version."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while True:
            request = wire.GetModelStatusRequest()
            self._fill_spec(request.model_spec, self.version)
            remaining = max(0.05, deadline - time.monotonic())
            try:
                response = self._status_rpc(request, timeout=min(self.timeout_s, remaining))
                ready = [s.version for s in response.model_version_status if s.state == wire.STATE_AVAILABLE]
                if ready:
                    return max(ready)
                last = ", ".join(f"version {s.version}: {wire.STATE_NAMES.get(s.state, s.state)}"
                                 f"{' ' + s.status.error_message if s.status.error_message else ''}"
                                 for s in response.model_version_status)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE | {grpc.StatusCode.NOT_FOUND}:
                    raise self._error(exc, "GetModelStatus") from exc
                last = f"{exc.code().name}: {exc.details()}"
            if time.monotonic() >= deadline:
                raise ModelUnavailableError(f"{self._describe()} not available within {timeout_s} s ({last})")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _patiently(self, call: Callable[[], T]) -> T:
        """``call``, and once more after waiting for the model when the server was unavailable.

        The client's own retries (``retries``, seconds) cover a blip; a model server that was restarted needs
        tens of seconds to load its models. When the retries are spent, this waits until the server reports
        the model AVAILABLE (``GetModelStatus``, at most ``load_timeout_s``) and calls once more; if it never
        comes, the error names both reasons. ``load_timeout_s`` 0: no waiting.
        """
        try:
            return call()
        except ModelUnavailableError as first:
            if self.load_timeout_s <= 0:
                raise
            log.warning("model server unavailable; waiting for it to load",
                        extra={"predictor": repr(self), "error": str(first), "timeout_s": self.load_timeout_s})
            try:
                self.wait_until_available(self.load_timeout_s)
            except ModelUnavailableError as waited:
                raise ModelUnavailableError(f"{first}; then {waited}") from None
            return call()

    def _predict_outputs(self, inputs: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        try:
            return self._predict_all(inputs, outputs)
        except _PinnedVersionGone:
            log.warning("model version changed during a call; starting the call again on the new version",
                        extra={"model": self.model_name, "address": self.address})
            self._signature = None
            return self._predict_all(inputs, outputs)

    def _predict_all(self, inputs: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        signature = self.metadata()
        pinned = self.version

        def run(index: int, batch: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
            nonlocal pinned
            request = wire.PredictRequest(output_filter=names)
            self._fill_spec(request.model_spec, pinned)
            request.model_spec.signature_name = self.signature
            for name, array in batch.items():
                wire.ndarray_to_tensor_proto(array, request.inputs[name])
            try:
                response = self._call(self._predict_rpc, request, "Predict")
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND and index > 0 and self.version is None:
                    raise _PinnedVersionGone() from exc
                raise self._error(exc, "Predict", pinned) from exc
            pinned = int(response.model_spec.version.value) if pinned is None else pinned
            missing = [name for name in names if name not in response.outputs]
            if missing:
                raise ServingError(f"Predict: {self._describe(pinned)} returned no output {missing[0]!r}")
            return {name: wire.tensor_proto_to_ndarray(response.outputs[name]) for name in names}

        result = predict_batched(signature, inputs, outputs, run, batch_size=self.batch_size,
                                 max_batch_bytes=self.max_batch_bytes)
        self.last_version = signature.version if pinned is None else pinned
        return result


# --- in-process ------------------------------------------------------------------------------------------
class LocalPredictor(_BatchedPredictor):
    """The same interface over a SavedModel loaded in this process (TensorFlow imported on construction)."""

    def __init__(self, saved_model_dir: Path | str, *, batch_size: int = 64, signature: str = DEFAULT_SIGNATURE,
                 output: str | None = None, max_batch_mb: float | None = None) -> None:
        from serving.servable import Servable, ServableError

        self._servable_error = ServableError
        self.path = Path(saved_model_dir)
        self.batch_size = batch_size
        self.max_batch_bytes = _max_batch_bytes(max_batch_mb)
        self.signature = signature
        self.output = output
        if not (self.path / "saved_model.pb").is_file():
            raise ModelUnavailableError(f"no SavedModel at {self.path} (expected {self.path}/saved_model.pb)")
        try:
            self._servable = Servable(self.path)
            self._signature = self._servable.signature(signature)
        except ServableError as exc:
            raise SignatureMismatchError(f"{self.path}: {exc.message}") from exc
        self.last_version: int | None = self._servable.version

    def __repr__(self) -> str:
        return f"LocalPredictor({str(self.path)!r})"

    def metadata(self) -> ModelSignature:
        return self._signature

    def _predict_outputs(self, inputs: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        def run(_index: int, batch: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
            try:
                return self._servable.run(self.signature, batch, names)
            except self._servable_error as exc:
                if exc.code in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
                    raise SignatureMismatchError(f"{self.path}: {exc.message}", self._signature.inputs) from exc
                raise ServingError(f"{self.path}: {exc.code}: {exc.message}") from exc

        return predict_batched(self._signature, inputs, outputs, run, batch_size=self.batch_size,
                               max_batch_bytes=self.max_batch_bytes)

    def close(self) -> None:
        """Nothing to release beyond the Python objects; present so both predictors can be closed alike."""


@dataclass(frozen=True)
class Model:
    """One modality's model as the pipeline uses it: the version, its metadata and a predictor for exactly it."""

    version: int
    metadata: dict[str, Any]
    predictor: Predictor


def open_model(modality: str, settings: Settings, *, models_dir: Path | str | None = None,
               version: int | None = None, local: bool = False) -> Model:
    """THE predictor factory: a version on the models volume (the latest by default), its metadata, a predictor.

    ``local``: a :class:`LocalPredictor` on the SavedModel in this process (``empathy analyze``, evaluation,
    fusion training). Otherwise a :class:`GrpcPredictor` at ``settings.model_server_for(modality)``
    (model name = modality name) pinned to that version, so the preprocessing parameters in the metadata
    and the served weights belong together also while a newer version is rolled out; it waits for a
    restarting model server up to ``EMPATHY_MODEL_LOAD_TIMEOUT_S``. Raises
    :class:`serving.model_store.ModelNotFoundError` when the volume holds no such version.
    """
    from serving.model_store import read_metadata, version_dir

    path = version_dir(settings.models_dir if models_dir is None else models_dir, modality, version)
    metadata = read_metadata(path)
    if local:
        predictor: Predictor = LocalPredictor(path, batch_size=settings.batch_size, max_batch_mb=settings.max_batch_mb)
    else:
        predictor = GrpcPredictor(settings.model_server_for(modality), modality, version=int(path.name),
                                  timeout_s=settings.model_server_timeout_s, retries=settings.model_server_retries,
                                  batch_size=settings.batch_size, backoff_s=settings.model_server_backoff_s,
                                  load_timeout_s=settings.model_load_timeout_s, max_batch_mb=settings.max_batch_mb)
    return Model(version=int(path.name), metadata=metadata, predictor=predictor)


def open_models(names: Sequence[str], settings: Settings, *, models_dir: Path | str | None = None,
                local: bool = False) -> tuple[dict[str, Predictor], dict[str, dict[str, Any]]]:
    """:func:`open_model` (latest version) for each of ``names``: ``(predictors, metadata)``, both by modality,
    what :func:`shared.pipeline.analyze_video` and evaluation take."""
    models = {name: open_model(name, settings, models_dir=models_dir, local=local) for name in names}
    return ({name: model.predictor for name, model in models.items()},
            {name: model.metadata for name, model in models.items()})
