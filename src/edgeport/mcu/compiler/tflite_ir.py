"""A .tflite file as a small graph: tensors, ops in execution order, graph inputs and outputs.

Read with the TFLite flatbuffer schema that ships with ai-edge-litert
(`ai_edge_litert.schema_py_generated`). Only what a code generator needs is kept: each
tensor's shape, dtype, quantization and constant data (NumPy), each op's builtin name, tensor
indices and options as a plain dict with TFLite's option names in snake_case
(`stride_w`, `dilation_h_factor`, `fused_activation_function`, `filter_width`, ...), enums
as their names (`padding: "SAME"`, `fused_activation_function: "RELU6"`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from edgeport.errors import InputError, MissingDependencyError

_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT8": "int8", "UINT8": "uint8",
           "INT16": "int16", "UINT16": "uint16", "INT32": "int32", "UINT32": "uint32", "INT64": "int64",
           "UINT64": "uint64", "BOOL": "bool"}


@dataclass
class Tensor:
    """One tensor of the graph. `data` is set for constants (weights, biases, shapes)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray | None = None        # float32, one per channel or one per tensor
    zero_points: np.ndarray | None = None   # int64, same length as scales
    quantized_dimension: int = 0
    data: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize if self.dtype in _DTYPES.values() else 0

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def quantized(self) -> bool:
        return self.scales is not None and len(self.scales) > 0

    @property
    def per_channel(self) -> bool:
        return self.quantized and len(self.scales) > 1

    @property
    def scale(self) -> float:
        """The (first) scale; 0.0 for an unquantized tensor."""
        return float(self.scales[0]) if self.quantized else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.quantized and self.zero_points is not None and len(self.zero_points) else 0

    @property
    def label(self) -> str:
        return self.name or f"tensor {self.index}"


@dataclass
class Op:
    """One operator: builtin name (e.g. "CONV_2D"; "CUSTOM:<code>" for custom ops), tensor
    indices (-1 for an omitted optional input) and options."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    source: str = "model.tflite"

    def node_label(self, op: Op) -> str:
        """How errors name an op: its first output tensor and its position in the graph."""
        out = self.tensors[op.outputs[0]].label if op.outputs else "?"
        return f"{out} (op {op.index})"

    def consumers(self, tensor: int) -> list[Op]:
        return [op for op in self.ops if tensor in op.inputs]

    def producer(self, tensor: int) -> Op | None:
        return next((op for op in self.ops if tensor in op.outputs), None)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise MissingDependencyError("ai-edge-litert", "reading a .tflite file", extra="android") from None
    return schema


def _enum_names(enum_class) -> dict[int, str]:
    return {value: key for key, value in vars(enum_class).items() if not key.startswith("_")}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _options(op, schema) -> dict:
    """The op's builtin options object as {snake_case_name: value}, enums as names."""
    opts = op.builtinOptions
    if opts is None:
        return {}
    enums = {"padding": _enum_names(schema.Padding),
             "fused_activation_function": _enum_names(schema.ActivationFunctionType)}
    result = {}
    for key, value in vars(opts).items():
        key = _snake(key)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        result[key] = enums[key].get(value, value) if key in enums else value
    return result


def _constant(tensor, buffer, raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The constant data of a tensor, or None for an activation. Buffers stored after the
    flatbuffer (models over 2 GB) are read by offset."""
    if buffer is None:
        return None
    if buffer.data is not None and len(buffer.data):
        data = np.asarray(buffer.data, dtype=np.uint8).tobytes()
    elif buffer.offset > 1:
        if buffer.offset + buffer.size > len(raw):
            raise ValueError(f"tensor '{tensor.label}' points past the end of the file")
        data = raw[buffer.offset:buffer.offset + buffer.size]
    else:
        return None
    if dtype not in _DTYPES.values():
        return np.frombuffer(data, dtype=np.uint8)  # packed int4 etc.: kept as bytes
    values = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"tensor '{tensor.label}' has {values.size} values for shape {list(shape)}")
    return values.astype(dtype).reshape(shape)


def _tensor(index: int, t, buffers, raw: bytes, type_names: dict) -> Tensor:
    name = _name(t)
    dtype = _DTYPES.get(type_names.get(t.type, ""), type_names.get(t.type, f"type{t.type}").lower())
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    q = t.quantization
    scales = zero_points = None
    if q is not None and q.scale is not None and len(q.scale):
        scales = np.asarray(q.scale, dtype=np.float32)
        zero_points = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(scales)), dtype=np.int64)
    tensor = Tensor(index, name, shape, dtype, scales, zero_points, int(q.quantizedDimension) if q is not None else 0)
    buffer = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
    tensor.data = _constant(tensor, buffer, raw, dtype, shape)
    return tensor


def read_tflite(data: bytes, source: str = "model.tflite") -> Graph:
    """Parse a .tflite flatbuffer into a `Graph`.

    Args:
        data: the file's bytes.
        source: the file's name, used in error messages.

    Returns:
        The graph of the model's single subgraph.

    Raises:
        InputError: not a .tflite file, truncated or corrupt, or more than one subgraph.
    """
    schema = _schema()
    raw = bytes(data)
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise InputError(f"{source}: not a .tflite file (no TFL3 flatbuffer identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(raw, 0)
        if not model.subgraphs:
            raise ValueError("no subgraph")
        op_names = _enum_names(schema.BuiltinOperator)
        type_names = _enum_names(schema.TensorType)
        codes = []
        for code in model.operatorCodes or []:
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            name = op_names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
                name = f"CUSTOM:{custom}"
            codes.append(name)
        graph_def = model.subgraphs[0]
        buffers = model.buffers or []
        tensors = [_tensor(i, t, buffers, raw, type_names) for i, t in enumerate(graph_def.tensors or [])]
        for i, op in enumerate(graph_def.operators or []):
            if not 0 <= op.opcodeIndex < len(codes):
                raise ValueError(f"op {i} has operator code {op.opcodeIndex} of {len(codes)}")
        ops = [Op(i, codes[op.opcodeIndex], tuple(int(x) for x in (op.inputs if op.inputs is not None else ())),
                  tuple(int(x) for x in (op.outputs if op.outputs is not None else ())), _options(op, schema))
               for i, op in enumerate(graph_def.operators or [])]
        graph = Graph(tensors, ops, tuple(int(x) for x in graph_def.inputs), tuple(int(x) for x in graph_def.outputs),
                      source)
        for op in ops:
            for t in op.inputs + op.outputs:
                if not -1 <= t < len(tensors) or (t == -1 and t in op.outputs):
                    raise ValueError(f"op {op.index} uses tensor {t} of {len(tensors)}")
        for t in graph.inputs + graph.outputs:
            if not 0 <= t < len(tensors):
                raise ValueError(f"the graph's inputs or outputs name tensor {t} of {len(tensors)}")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails in many ways
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{source}: corrupt or truncated .tflite file ({detail})") from None
    check_numbers(model, source)
    if len(model.subgraphs) > 1:
        raise InputError(f"{source}: has {len(model.subgraphs)} subgraphs; the C library supports one "
                         "(no control flow ops)")
    return graph


def validate_tflite(data: bytes, source: str) -> None:
    """Refuse a .tflite file that is not a readable flatbuffer or whose numbers are not sane (see
    `check_numbers`) before a runtime loads it: LiteRT aborts the process on some of them."""
    schema = _schema()
    raw = bytes(data)
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise InputError(f"{source}: not a .tflite file (no TFL3 flatbuffer identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(raw, 0)
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails in many ways
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{source}: corrupt or truncated .tflite file ({detail})") from None
    check_numbers(model, source)


def check_numbers(model, source: str) -> None:
    """Refuse negative dimensions, quantization parameters that are not sane
    (`quantization_problem`) and float op options that are not finite (a NaN softmax beta), naming
    the tensor or op. `model` is a `schema.ModelT`."""
    type_names = _enum_names(_schema().TensorType)
    for g, subgraph in enumerate(model.subgraphs or []):
        where = source if g == 0 else f"{source} (subgraph {g})"
        for index, t in enumerate(subgraph.tensors or []):
            label = _name(t) or f"tensor {index}"
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
            if any(d < 0 for d in shape):
                raise InputError(f"{where}: tensor '{label}' (index {index}) has shape {list(shape)}")
            q = t.quantization
            if q is None or q.scale is None:
                continue
            dtype = _DTYPES.get(type_names.get(t.type, ""), type_names.get(t.type, "").lower())
            problem = quantization_problem(dtype, shape, q.scale, q.zeroPoint, int(q.quantizedDimension))
            if problem:
                raise InputError(f"{where}: tensor '{label}' (index {index}): {problem}")
        for index, op in enumerate(subgraph.operators or []):
            for key, value in (vars(op.builtinOptions) if op.builtinOptions is not None else {}).items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise InputError(f"{where}: op {index} has option {_snake(key)} = {value}; it must be finite")


def _name(t) -> str:
    return t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else (t.name or "")


# zero point ranges of the integer types TFLite quantizes
_ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int4": (-8, 7),
                     "int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}


def quantization_problem(dtype: str, shape, scales, zero_points, axis: int) -> str | None:
    """What is wrong with a tensor's quantization parameters, or None when they are sane.

    Scales must be finite and positive, zero points inside the range of the tensor's type and one
    or as many as the scales, and per-channel scales one per slice of a
    dimension the tensor has. Float tensors are not checked: runtimes ignore their parameters.
    """
    if dtype not in _ZERO_POINT_RANGE or scales is None or len(scales) == 0:
        return None
    scales = np.asarray(scales, dtype=np.float64)
    bad = scales[~(np.isfinite(scales) & (scales > 0))]
    if bad.size:
        return f"quantization scale {bad[0]} is not finite and positive"
    if zero_points is not None and len(zero_points):
        zero_points = np.asarray(zero_points, dtype=np.int64)
        if len(zero_points) not in (1, len(scales)):
            return f"{len(scales)} quantization scales but {len(zero_points)} zero points"
        low, high = _ZERO_POINT_RANGE[dtype]
        outside = zero_points[(zero_points < low) | (zero_points > high)]
        if outside.size:
            return f"zero point {outside[0]} is outside the range of {dtype} [{low}, {high}]"
    if len(scales) > 1:
        dims = tuple(shape)
        if not 0 <= axis < len(dims) or dims[axis] != len(scales):
            return f"{len(scales)} per-channel scales on dimension {axis} of shape {list(dims)}"
    return None
