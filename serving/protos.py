"""TF Serving's wire messages and the numpy <-> TensorProto codec, without importing TensorFlow.

Why this module exists: the generated ``tensorflow_serving.apis`` modules import ``tensorflow.core...``,
which runs TensorFlow's ``__init__`` (measured here: ~4-6 s and ~600 MB RSS per process). The modality
workers only need to send arrays to a model server, so paying that in five worker processes would be
wasteful. gRPC routes by method path and protobuf encodes by field number and type, never by message
name, so the few messages declared below (same field numbers and types as ``tensorflow/core/framework``
and ``tensorflow_serving/apis``) are byte-compatible with the real ones. They live in a private
``DescriptorPool`` under the package ``empathy.tfs_wire`` and therefore never clash with TensorFlow's
own descriptors when both are loaded in one process. ``tests/unit/serving/test_client.py`` checks every
message against the real classes in both directions.

The codec functions only touch field names shared by our messages and TensorFlow's, so the model server
uses the same code on the real ``tensorflow.TensorProto``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# --- message declarations ------------------------------------------------------------------------------
# (field name, number, type) ; type: scalar type, message name, "repeated <type>" or "map <message>"
# (map keys are always strings here). Enums (DataType, ModelVersionStatus.State, error codes) travel
# as varints, so int32 fields read and write them exactly.
_MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "TensorShapeDim": [("size", 1, "int64"), ("name", 2, "string")],
    "TensorShapeProto": [("dim", 2, "repeated TensorShapeDim"), ("unknown_rank", 3, "bool")],
    "TensorProto": [
        ("dtype", 1, "int32"),
        ("tensor_shape", 2, "TensorShapeProto"),
        ("version_number", 3, "int32"),
        ("tensor_content", 4, "bytes"),
        ("float_val", 5, "repeated float"),
        ("double_val", 6, "repeated double"),
        ("int_val", 7, "repeated int32"),
        ("string_val", 8, "repeated bytes"),
        ("scomplex_val", 9, "repeated float"),
        ("int64_val", 10, "repeated int64"),
        ("bool_val", 11, "repeated bool"),
        ("dcomplex_val", 12, "repeated double"),
        ("half_val", 13, "repeated int32"),
        ("uint32_val", 16, "repeated uint32"),
        ("uint64_val", 17, "repeated uint64"),
    ],
    "Int64Value": [("value", 1, "int64")],
    "ModelSpec": [
        ("name", 1, "string"),
        ("version", 2, "Int64Value"),
        ("signature_name", 3, "string"),
        ("version_label", 4, "string"),
    ],
    "PredictRequest": [
        ("model_spec", 1, "ModelSpec"),
        ("inputs", 2, "map TensorProto"),
        ("output_filter", 3, "repeated string"),
    ],
    "PredictResponse": [("outputs", 1, "map TensorProto"), ("model_spec", 2, "ModelSpec")],
    "Any": [("type_url", 1, "string"), ("value", 2, "bytes")],
    "GetModelMetadataRequest": [("model_spec", 1, "ModelSpec"), ("metadata_field", 2, "repeated string")],
    "GetModelMetadataResponse": [("model_spec", 1, "ModelSpec"), ("metadata", 2, "map Any")],
    "TensorInfo": [("name", 1, "string"), ("dtype", 2, "int32"), ("tensor_shape", 3, "TensorShapeProto")],
    "SignatureDef": [
        ("inputs", 1, "map TensorInfo"),
        ("outputs", 2, "map TensorInfo"),
        ("method_name", 3, "string"),
    ],
    "SignatureDefMap": [("signature_def", 1, "map SignatureDef")],
    "StatusProto": [("error_code", 1, "int32"), ("error_message", 2, "string")],
    "ModelVersionStatus": [("version", 1, "int64"), ("state", 2, "int32"), ("status", 3, "StatusProto")],
    "GetModelStatusRequest": [("model_spec", 1, "ModelSpec")],
    "GetModelStatusResponse": [("model_version_status", 1, "repeated ModelVersionStatus")],
}

_PACKAGE = "empathy.tfs_wire"
_SCALARS = {
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}


def _set_type(field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
        field.type_name = f".{_PACKAGE}.{type_name}"


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """Build the proto3 file declaring :data:`_MESSAGES` (maps become nested ``map_entry`` messages)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="empathy/tfs_wire.proto", package=_PACKAGE, syntax="proto3")
    label_repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    label_optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    for message_name, fields in _MESSAGES.items():
        message = fdp.message_type.add(name=message_name)
        for field_name, number, spec in fields:
            field = message.field.add(name=field_name, number=number)
            kind, _, type_name = spec.rpartition(" ")
            if kind == "map":
                entry_name = "".join(part.capitalize() for part in field_name.split("_")) + "Entry"
                entry = message.nested_type.add(name=entry_name)
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=label_optional, type=_SCALARS["string"])
                value = entry.field.add(name="value", number=2, label=label_optional)
                _set_type(value, type_name)
                field.label = label_repeated
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".{_PACKAGE}.{message_name}.{entry_name}"
            else:
                field.label = label_repeated if kind == "repeated" else label_optional
                _set_type(field, type_name)
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name: str) -> type:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


# The classes the client and the tests use, each named as its message.
(TensorProto, ModelSpec, PredictRequest, PredictResponse, GetModelMetadataRequest, GetModelMetadataResponse,
 SignatureDefMap, GetModelStatusRequest, GetModelStatusResponse) = (_message_class(name) for name in (
    "TensorProto", "ModelSpec", "PredictRequest", "PredictResponse", "GetModelMetadataRequest",
    "GetModelMetadataResponse", "SignatureDefMap", "GetModelStatusRequest", "GetModelStatusResponse"))

# gRPC method paths: identical for TensorFlow Serving and services.model_server.
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA_METHOD = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"
SIGNATURE_DEF_MAP_TYPE_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"

# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto).
STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}
STATE_AVAILABLE = 30

# --- dtypes ----------------------------------------------------------------------------------------------
# TensorFlow's DataType enum (types.proto) as a table: value, name, numpy dtype ("object" for strings), and the
# typed field used when values are not in tensor_content. bfloat16 and the quantised types have no numpy dtype
# and are not supported.
_DTYPE_TABLE = """
 1  DT_FLOAT       float32     float_val
 2  DT_DOUBLE      float64     double_val
 3  DT_INT32       int32       int_val
 4  DT_UINT8       uint8       int_val
 5  DT_INT16       int16       int_val
 6  DT_INT8        int8        int_val
 7  DT_STRING      object      string_val
 8  DT_COMPLEX64   complex64   scomplex_val
 9  DT_INT64       int64       int64_val
10  DT_BOOL        bool        bool_val
17  DT_UINT16      uint16      int_val
18  DT_COMPLEX128  complex128  dcomplex_val
19  DT_HALF        float16     half_val
22  DT_UINT32      uint32      uint32_val
23  DT_UINT64      uint64      uint64_val
"""
_DTYPES: dict[int, tuple[str, np.dtype, str]] = {
    int(enum): (name, np.dtype(dtype), field)
    for enum, name, dtype, field in (line.split() for line in _DTYPE_TABLE.strip().splitlines())
}
_ENUM_BY_NUMPY = {dtype: enum for enum, (_, dtype, _) in _DTYPES.items() if dtype != np.dtype(object)}


def dtype_name(enum: int) -> str:
    """``DT_FLOAT`` for 1, ``DT_INVALID`` for 0, ``DT_<n>`` for types this codec does not know."""
    if enum == 0:
        return "DT_INVALID"
    return _DTYPES[enum][0] if enum in _DTYPES else f"DT_{enum}"


def numpy_dtype(enum: int) -> np.dtype:
    """The numpy dtype of a DataType enum value (``object`` for DT_STRING)."""
    if enum not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype {dtype_name(enum)}")
    return _DTYPES[enum][1]


def dtype_enum(dtype: np.dtype | type) -> int:
    """DataType enum value of a numpy dtype; bytes/str/object arrays are DT_STRING."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return 7
    if dtype.newbyteorder("=") not in _ENUM_BY_NUMPY:
        raise ValueError(f"numpy dtype {dtype} has no TensorFlow equivalent here")
    return _ENUM_BY_NUMPY[dtype.newbyteorder("=")]


# --- codec ------------------------------------------------------------------------------------------------
def _string_items(array: np.ndarray) -> list[bytes]:
    return [item if isinstance(item, bytes) else str(item).encode("utf-8") for item in array.ravel().tolist()]


def ndarray_to_tensor_proto(array: np.ndarray | Any, proto: Any = None, *, as_fields: bool = False) -> Any:
    """Fill ``proto`` (a new :data:`TensorProto` by default) with ``array``.

    ``as_fields=False`` packs numbers little-endian into ``tensor_content`` (what ``tf.make_tensor_proto``
    sends: smallest and fastest). ``as_fields=True`` uses the typed repeated fields, which is what
    TensorFlow Serving puts in Predict responses (``AsProtoField``) and what clients reading
    ``outputs[...].float_val`` expect. Strings always go to ``string_val``.
    """
    array = np.asarray(array)
    proto = TensorProto() if proto is None else proto
    enum = dtype_enum(array.dtype)
    proto.dtype = enum
    for size in array.shape:
        proto.tensor_shape.dim.add(size=int(size))
    if enum == 7:
        proto.string_val.extend(_string_items(array))
        return proto
    if not as_fields:
        proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        return proto
    field = _DTYPES[enum][2]
    flat = array.ravel()
    if enum == 19:  # half_val carries the IEEE half bit patterns
        values = flat.view(np.uint16).astype(np.int32)
    elif array.dtype.kind == "c":
        values = flat.view(flat.real.dtype)  # interleaved real, imaginary
    else:
        values = flat
    getattr(proto, field).extend(values.tolist())
    return proto


def _shape(proto: Any) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise ValueError("a tensor value cannot have an unknown rank")
    return tuple(int(dim.size) for dim in proto.tensor_shape.dim)


def tensor_proto_to_ndarray(proto: Any) -> np.ndarray:
    """The numpy array a TensorProto holds, from ``tensor_content`` or from the typed fields.

    Follows TensorFlow's rules: when a typed field holds fewer values than the shape needs, the last value
    is repeated (``tf.make_tensor_proto`` compresses constant tensors that way); no values at all means zeros.
    """
    enum = int(proto.dtype)
    dtype = numpy_dtype(enum)
    shape = _shape(proto)
    count = int(np.prod(shape, dtype=np.int64))
    if enum == 7:
        items = list(proto.string_val)
        if len(items) != count:
            raise ValueError(f"DT_STRING tensor of shape {shape} holds {len(items)} strings, expected {count}")
        out = np.empty(count, dtype=object)
        out[:] = items
        return out.reshape(shape)
    if proto.tensor_content:
        content = bytes(proto.tensor_content)
        expected = count * dtype.itemsize
        if len(content) != expected:
            raise ValueError(
                f"{dtype_name(enum)} tensor of shape {shape} has {len(content)} bytes of content, expected {expected}"
            )
        return np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
    field_values = getattr(proto, _DTYPES[enum][2])
    if enum == 19:
        values = np.asarray(field_values, dtype=np.int32).astype(np.uint16).view(np.float16)
    elif dtype.kind == "c":
        raw = np.asarray(field_values, dtype=np.float32 if enum == 8 else np.float64)
        values = raw[0::2] + 1j * raw[1::2]
    else:
        values = np.asarray(field_values, dtype=dtype)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 0:
        return np.zeros(shape, dtype=dtype)
    if values.size > count:
        raise ValueError(f"{dtype_name(enum)} tensor of shape {shape} holds {values.size} values, expected {count}")
    padded = np.empty(count, dtype=dtype)
    padded[: values.size] = values
    padded[values.size :] = values[-1]
    return padded.reshape(shape)


# --- signatures -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpecInfo:
    """One named input or output of a signature: numpy dtype and shape (``None`` = any size)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None  # None: unknown rank

    def describe(self) -> str:
        if self.shape is None:
            shape = "unknown rank"
        else:
            shape = "(" + ", ".join("None" if s is None else str(s) for s in self.shape) + ("," if len(self.shape) == 1 else "") + ")"
        dtype = "string" if self.dtype == np.dtype(object) else str(self.dtype)
        return f"{self.name}: {dtype} {shape}"


@dataclass(frozen=True)
class ModelSignature:
    """What a served model expects and returns, the same whether read over gRPC or from a local SavedModel."""

    model: str
    version: int
    signature: str
    method_name: str
    inputs: dict[str, TensorSpecInfo]
    outputs: dict[str, TensorSpecInfo]

    def describe_inputs(self) -> str:
        return ", ".join(spec.describe() for spec in self.inputs.values())


def _spec_from_tensor_info(name: str, info: Any) -> TensorSpecInfo:
    if info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(None if dim.size < 0 else int(dim.size) for dim in info.tensor_shape.dim)
    dtype = numpy_dtype(int(info.dtype)) if int(info.dtype) in _DTYPES else np.dtype(object)
    return TensorSpecInfo(name=name, dtype=dtype, shape=shape)


def signature_from_def(signature_def: Any, *, model: str, version: int, signature: str) -> ModelSignature:
    """Turn a SignatureDef (ours or TensorFlow's) into a :class:`ModelSignature`, inputs sorted by name."""
    return ModelSignature(
        model=model,
        version=version,
        signature=signature,
        method_name=signature_def.method_name,
        inputs={k: _spec_from_tensor_info(k, signature_def.inputs[k]) for k in sorted(signature_def.inputs)},
        outputs={k: _spec_from_tensor_info(k, signature_def.outputs[k]) for k in sorted(signature_def.outputs)},
    )
