"""One loaded SavedModel version: its signatures, input checks and execution.

Shared by the model server (one :class:`Servable` per served version) and by the in-process
``LocalPredictor``, so that a request is validated and run the same way whether it comes over gRPC, REST
or from ``empathy analyze``. Checks are TF Serving's: inputs must be exactly the signature's names, with
its dtype (no silent casts: callers convert first) and a compatible shape; failures carry the status code
TF Serving would answer with.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from serving.protos import ModelSignature, TensorSpecInfo, signature_from_def

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"


class ServableError(Exception):
    """A request a servable (or the repository holding it) refuses; ``code`` is a gRPC status code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _shape_ok(expected: tuple[int | None, ...] | None, actual: tuple[int, ...]) -> bool:
    if expected is None:
        return True
    if len(expected) != len(actual):
        return False
    return all(e is None or e == a for e, a in zip(expected, actual, strict=True))


class Servable:
    """A SavedModel directory loaded with ``tf.saved_model.load``, ready to run any of its signatures."""

    def __init__(self, path: Path | str, *, model: str = "", version: int = 0) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.path = Path(path)
        self.model = model or self.path.parent.name
        self.version = version or (int(self.path.name) if self.path.name.isdigit() else 0)
        started = time.monotonic()
        # The MetaGraphDef's signature_def map is what TF Serving reports as metadata: read it verbatim.
        saved_model = saved_model_pb2.SavedModel.FromString((self.path / "saved_model.pb").read_bytes())
        meta_graph = next(
            (mg for mg in saved_model.meta_graphs if "serve" in mg.meta_info_def.tags), saved_model.meta_graphs[0]
        )
        self.signature_defs = dict(meta_graph.signature_def)
        self._loaded = tf.saved_model.load(str(self.path), tags=["serve"])
        self._functions = dict(self._loaded.signatures)
        self.signatures: dict[str, ModelSignature] = {
            name: signature_from_def(self.signature_defs[name], model=self.model, version=self.version, signature=name)
            for name in self._functions
            if name in self.signature_defs
        }
        log.info(
            "loaded servable",
            extra={"model": self.model, "version": self.version, "path": str(self.path),
                   "signatures": sorted(self.signatures), "load_s": round(time.monotonic() - started, 3)},
        )

    def signature(self, name: str = "") -> ModelSignature:
        """The named signature (``serving_default`` when empty); FAILED_PRECONDITION if absent, as TF Serving."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServableError(
                "FAILED_PRECONDITION",
                f'Serving signature key "{name}" not found in model {self.model!r} version {self.version}; '
                f"available: {sorted(self.signatures)}",
            )
        return self.signatures[name]

    def check_inputs(self, signature: ModelSignature, inputs: dict[str, np.ndarray]) -> None:
        """INVALID_ARGUMENT naming what is wrong and what the signature expects."""
        expected = signature.inputs
        unknown = sorted(set(inputs) - set(expected))
        missing = sorted(set(expected) - set(inputs))
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown input(s) {unknown}")
            if missing:
                parts.append(f"missing input(s) {missing}")
            raise ServableError(
                "INVALID_ARGUMENT",
                f"{' and '.join(parts)} for signature {signature.signature!r} of model {self.model!r}; "
                f"expected inputs: {signature.describe_inputs()}",
            )
        for name, array in inputs.items():
            spec: TensorSpecInfo = expected[name]
            is_string = spec.dtype == np.dtype(object)
            dtype_ok = array.dtype.kind in "OSU" if is_string else array.dtype == spec.dtype
            if not dtype_ok:
                raise ServableError(
                    "INVALID_ARGUMENT",
                    f"input {name!r} has dtype {array.dtype}, signature {signature.signature!r} of model "
                    f"{self.model!r} expects {spec.describe()}",
                )
            if not _shape_ok(spec.shape, array.shape):
                raise ServableError(
                    "INVALID_ARGUMENT",
                    f"input {name!r} has shape {tuple(array.shape)}, signature {signature.signature!r} of model "
                    f"{self.model!r} expects {spec.describe()}",
                )

    def run(self, signature_name: str, inputs: dict[str, np.ndarray],
            output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
        """Validate ``inputs`` and run the signature; returns the requested outputs as numpy arrays."""
        import tensorflow as tf

        signature = self.signature(signature_name)
        self.check_inputs(signature, inputs)
        wanted = list(output_filter) if output_filter else list(signature.outputs)
        unknown = sorted(set(wanted) - set(signature.outputs))
        if unknown:
            raise ServableError(
                "INVALID_ARGUMENT",
                f"output_filter names unknown output(s) {unknown}; outputs: {sorted(signature.outputs)}",
            )
        function = self._functions[signature.signature]
        tensors = {
            name: tf.constant(array.astype(bytes) if array.dtype.kind in "OSU" else array)
            for name, array in inputs.items()
        }
        try:
            outputs: dict[str, Any] = function(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise ServableError("INVALID_ARGUMENT", f"model {self.model!r} rejected the inputs: {exc}") from exc
        except tf.errors.OpError as exc:
            raise ServableError("INTERNAL", f"model {self.model!r} failed: {exc}") from exc
        return {name: outputs[name].numpy() for name in wanted}
