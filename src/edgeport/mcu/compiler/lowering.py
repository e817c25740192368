"""TFLite ops -> calls into edgeport's C kernels: what every lowering shares (`Lowering`, `Step`,
the checks, TFLite's Prepare arithmetic) and the convolutions, FULLY_CONNECTED, pooling and MEAN.
The other op families (`lowering_layout`, `lowering_elementwise`, `lowering_lowbit`) build on
this module; each family's `LOWERINGS` table goes into the registry built in `lowerings`.

Each lowering function checks that the op is a variant the kernels implement (int8, the
supported options), computes everything TFLite computes in Prepare (multipliers, shifts,
activation clamps, padding, broadcast strides) with `requant`, and returns a `Step`: const
parameter structs and arrays plus one C statement whose tensor operands are `Ref`s, turned into
pointers once the memory plan is known. An op without a lowering, or a variant without a kernel,
raises UnsupportedOpError before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from edgeport.errors import InputError, UnsupportedOpError
from edgeport.mcu.compiler import planner, requant
from edgeport.mcu.compiler.tflite_ir import Graph, Op, Tensor

NO_KERNEL = "no Cortex-M C kernel in edgeport"
MAX_DIMS = 6
MAX_CONCAT_INPUTS = 8
CTYPES = {"int8": "int8_t", "int32": "int32_t", "float32": "float", "uint8": "uint8_t", "bool": "uint8_t"}
CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int32_t": 4, "uint32_t": 4, "uint64_t": 8, "float": 4, "double": 8}
# C struct types of const tables: their fields in order (each row of the array is one struct)
STRUCT_FIELDS = {"ep_channel_quant": ("bias", "multiplier", "shift", "round")}
STRUCT_BYTES = {"ep_channel_quant": 16}
MAX_FAST_RIGHT_SHIFT = 22  # ep_requantize_fast folds output_offset * 2^r (|.| <= 2^29) into int32


@dataclass(frozen=True)
class Ref:
    """A tensor operand of a C statement, resolved to a pointer after memory planning."""

    tensor: int


@dataclass(frozen=True)
class ScratchRef:
    """The op's scratch buffer (Step.scratch bytes in the arena, alive during the op only)."""


@dataclass
class CArray:
    name: str
    ctype: str
    values: np.ndarray
    comment: str

    @property
    def nbytes(self) -> int:
        if self.ctype in STRUCT_BYTES:
            return len(self.values) * STRUCT_BYTES[self.ctype]
        return int(self.values.size) * CTYPE_BYTES[self.ctype]


@dataclass
class CStruct:
    ctype: str
    name: str
    fields: dict


@dataclass(frozen=True)
class Filter:
    """How a kernel gets its weight tensor: `arg`, a C expression for a dense int8 array (const, or
    decoded into RAM at init), or with `packed` for an `ep_packed_weights` decoded on the fly by
    the `_packed` kernel, which then needs `scratch` bytes of arena. `structs` go with the Step."""

    arg: str
    packed: bool = False
    scratch: int = 0
    structs: tuple[CStruct, ...] = ()


@dataclass
class Step:
    """One op as C: const data it needs and the statement that runs it."""

    op: Op
    code: list  # str and Ref parts, concatenated
    structs: list[CStruct] = field(default_factory=list)
    macs: int = 0
    scratch: int = 0  # bytes of arena the op needs while it runs (ScratchRef in `code`)


class Lowering:
    """Shared state while lowering one graph: const arrays (each emitted once) and aliases."""

    def __init__(self, graph: Graph, outputs: frozenset[int], inputs: frozenset[int] = frozenset()):
        self.graph = graph
        self.arrays: dict[str, CArray] = {}
        self.aliases: dict[int, int] = {}   # tensor -> tensor whose bytes it shares
        self.outputs = outputs              # tensors that must land in the caller's buffer
        self.inputs = inputs                # tensors read from the caller's (const) buffer
        self.notes: list[str] = []          # for the report: choices a user may want to know
        self.weight_storage: list[dict] = []  # per filter tensor: how it is stored
        self._filters: dict[int, Filter] = {}

    def last_use(self, op: Op, tensor: int) -> bool:
        """Whether no op after `op` reads `tensor`'s bytes (through any alias of them), and they
        are not the caller's: then `op` may overwrite them."""
        root = planner.resolve_alias(tensor, self.aliases)
        sharing = {t for t in range(len(self.graph.tensors)) if planner.resolve_alias(t, self.aliases) == root}
        if sharing & (self.inputs | self.outputs) or any(self.graph.tensors[t].is_constant for t in sharing):
            return False
        return all(user.index <= op.index for t in sharing for user in self.graph.consumers(t))

    def const(self, index: int) -> str:
        """Name of the const array holding tensor `index`'s data (emitted once)."""
        tensor = self.graph.tensors[index]
        name = f"t{index}"
        if name not in self.arrays:
            ctype = CTYPES.get(tensor.dtype)
            if ctype is None or tensor.data is None:
                raise InputError(f"{self.graph.source}: constant '{tensor.label}' of type {tensor.dtype} "
                                 "cannot be stored for the C library")
            shape = ", ".join(map(str, tensor.shape))
            self.arrays[name] = CArray(name, ctype, np.ravel(tensor.data), f"{tensor.label}: {tensor.dtype} [{shape}]")
        return name

    def filter(self, op: Op, index: int) -> Filter:
        """How `op`'s kernel reads its weight tensor `index` (its structs are returned once)."""
        if index not in self._filters:
            self._filters[index] = self._filter(op, index)
            return self._filters[index]
        return replace(self._filters[index], structs=())

    def _filter(self, op: Op, index: int) -> Filter:
        """Here: a dense const array (`lowering_compressed` stores it compressed)."""
        self.record_storage(op, index, "dense", None, self.graph.tensors[index].nbytes)
        return Filter(self.const(index))

    def replacement(self, op: Op) -> Step | None:
        """A Step replacing the registered lowering of `op` (low-bit kernels with a WeightStorage,
        `lowering_compressed`), or None: here, always None."""
        return None

    def record_storage(self, op: Op, index: int, form: str, decode: str | None, stored: int, **more) -> None:
        tensor = self.graph.tensors[index]
        self.weight_storage.append({"layer": self.graph.node_label(op), "op": op.index, "op_name": op.name,
                                    "tensor": tensor.label, "shape": list(tensor.shape), "format": form,
                                    "decode": decode, "stored_bytes": stored, "dense_bytes": tensor.nbytes, **more})

    def array(self, name: str, ctype: str, values, comment: str) -> str:
        values = np.asarray(values)
        self.arrays[name] = CArray(name, ctype, values if ctype in STRUCT_FIELDS else np.ravel(values), comment)
        return name

    def operand(self, index: int):
        """A kernel argument for tensor `index`: its const array, or a Ref to plan."""
        if index < 0:
            return "NULL"
        return self.const(index) if self.graph.tensors[index].is_constant else Ref(index)


# A lowering: the op, its graph and the shared state -> the op's Step (an op family's table maps
# TFLite op names to these; `lowerings.lowerings()` is the registry built from the tables).
Lower = Callable[[Op, Graph, Lowering], Step]


def unsupported(op: Op, graph: Graph, detail: str | None = None) -> UnsupportedOpError:
    return UnsupportedOpError(f"{op.name} ({detail})" if detail else op.name, graph.node_label(op), NO_KERNEL)


# ------------------------------------------------------------------ shared checks and math

def _tensors(op: Op, graph: Graph) -> tuple[list[Tensor | None], list[Tensor]]:
    inputs = [graph.tensors[i] if i >= 0 else None for i in op.inputs]
    return inputs, [graph.tensors[i] for i in op.outputs]


def _require_int8(op: Op, graph: Graph, *tensors: Tensor | None) -> None:
    for t in tensors:
        if t is not None and t.dtype != "int8":
            raise unsupported(op, graph, t.dtype)
        if t is not None and not t.quantized:
            raise unsupported(op, graph, "int8 without quantization parameters")


def _activation(op: Op, graph: Graph, output: Tensor) -> tuple[int, int]:
    name = op.options.get("fused_activation_function", "NONE")
    try:
        return requant.activation_range(name, output.scale, output.zero_point)
    except ValueError:
        raise unsupported(op, graph, f"fused {name}") from None


def _same_quantization(a: Tensor, b: Tensor) -> bool:
    return np.float32(a.scale) == np.float32(b.scale) and a.zero_point == b.zero_point


def compute_padding(stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """TFLite's ComputePaddingHeightWidth: top/left padding (half the total, rounded down)."""
    effective = (filter_size - 1) * dilation + 1
    return max(((out_size - 1) * stride + effective - in_size) // 2, 0)


def compute_out_size(padding: str, in_size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    """TFLite's ComputeOutSize for SAME and VALID padding."""
    effective = (filter_size - 1) * dilation + 1
    return (in_size + stride - 1) // stride if padding == "SAME" else (in_size + stride - effective) // stride


def _window(op: Op, graph: Graph, in_hw, filter_hw, out_hw, dilation=(1, 1)) -> tuple[int, int]:
    """Padding (top, left) of a convolution or pooling window; checks the model's output size."""
    padding = op.options.get("padding", "VALID")
    strides = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
    pads = []
    for axis in range(2):
        expected = compute_out_size(padding, in_hw[axis], filter_hw[axis], strides[axis], dilation[axis])
        if expected != out_hw[axis]:
            raise InputError(f"{graph.source}: {op.name} at {graph.node_label(op)} has output size {out_hw[axis]}, "
                             f"expected {expected} for {padding} padding")
        pads.append(compute_padding(strides[axis], dilation[axis], in_hw[axis], filter_hw[axis], out_hw[axis]))
    return pads[0], pads[1]


def _filter_checks(op: Op, graph: Graph, filt: Tensor, bias: Tensor | None, channels: int) -> None:
    if not filt.is_constant:
        raise unsupported(op, graph, "non-constant filter")
    if filt.zero_points is not None and np.any(filt.zero_points != 0):
        raise unsupported(op, graph, "filter zero point != 0")
    if len(filt.scales) not in (1, channels):
        raise unsupported(op, graph, f"{len(filt.scales)} filter scales for {channels} channels")
    if bias is not None and (bias.dtype != "int32" or not bias.is_constant):
        raise unsupported(op, graph, f"{bias.dtype} bias")


def _real_multipliers(inp: Tensor, filt: Tensor, out: Tensor, channels: int) -> np.ndarray:
    """input_scale * filter_scale[c] / output_scale in double, as TFLite's Prepare."""
    scales = np.broadcast_to(filt.scales.astype(np.float64), (channels,))
    return float(inp.scale) * scales / float(out.scale)


# ------------------------------------------------------------------ convolutions

def _conv_fields(op: Op, graph: Graph, inp: Tensor, filt: Tensor, out: Tensor, depthwise: bool) -> dict:
    if len(inp.shape) != 4 or len(filt.shape) != 4 or len(out.shape) != 4:
        raise unsupported(op, graph, "not 4-D NHWC")
    batches, in_h, in_w, in_c = inp.shape
    _, out_h, out_w, out_c = out.shape
    k_h, k_w = filt.shape[1], filt.shape[2]
    dilation = (op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1))
    pad_h, pad_w = _window(op, graph, (in_h, in_w), (k_h, k_w), (out_h, out_w), dilation)
    act_min, act_max = _activation(op, graph, out)
    if depthwise:
        if out_c % in_c or filt.shape[3] != out_c:
            raise unsupported(op, graph, f"depthwise {in_c} -> {out_c} channels")
        filter_in_c, multiplier = 1, out_c // in_c
    else:
        filter_in_c, multiplier = filt.shape[3], 1
        if in_c % filter_in_c or out_c % (in_c // filter_in_c) or filt.shape[0] != out_c:
            raise unsupported(op, graph, f"grouped conv {in_c} -> {out_c} with filter {list(filt.shape)}")
    return {"batches": batches, "in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w,
            "out_c": out_c, "k_h": k_h, "k_w": k_w, "stride_h": op.options.get("stride_h", 1),
            "stride_w": op.options.get("stride_w", 1), "dilation_h": dilation[0], "dilation_w": dilation[1],
            "pad_h": pad_h, "pad_w": pad_w, "filter_in_c": filter_in_c, "depth_multiplier": multiplier,
            "input_offset": -inp.zero_point, "output_offset": out.zero_point, "act_min": act_min,
            "act_max": act_max}


def channel_quant_table(multipliers: np.ndarray, shifts: np.ndarray, bias: np.ndarray | None, channels: int,
                        output_offset: int) -> np.ndarray:
    """Rows of ep_channel_quant (STRUCT_FIELDS order), one per output channel: the bias, TFLite's
    multiplier and shift, and ep_requantize_fast's rounding term 2^(r-1) + output_offset * 2^r for
    a right shift r (0 otherwise)."""
    multipliers = np.broadcast_to(np.asarray(multipliers, np.int64), (channels,))
    shifts = np.broadcast_to(np.asarray(shifts, np.int64), (channels,))
    right = np.maximum(-shifts, 0)
    round_ = np.where((right > 0) & (right <= MAX_FAST_RIGHT_SHIFT),
                      np.left_shift(1, np.clip(right - 1, 0, 62)) + output_offset * np.left_shift(1, np.clip(right, 0, 62)),
                      0)
    biases = np.zeros(channels, np.int64) if bias is None else np.asarray(bias, np.int64)
    return np.stack([biases, multipliers, shifts, round_], axis=1)


def requantize_fast_proven(acc_min: np.ndarray, acc_max: np.ndarray, shifts: np.ndarray) -> bool:
    """Whether ep_requantize_fast equals TFLite's MultiplyByQuantizedMultiplier for every reachable
    accumulator (bias included): every shift a right shift of at most MAX_FAST_RIGHT_SHIFT and
    |acc| < 2^29, so 2 acc fits the SMMULR and no rounding sum leaves int32."""
    bound = np.maximum(np.abs(acc_min.astype(np.int64)), np.abs(acc_max.astype(np.int64)))
    right = -np.asarray(shifts, np.int64)
    return bool(np.all((right >= 1) & (right <= MAX_FAST_RIGHT_SHIFT)) and np.all(bound < (1 << 29)))


def conv_scratch_bytes(fields: dict) -> int:
    """Arena bytes ep_conv2d_s8's DSP path needs (see ep_kernels.h): two int16 im2col columns,
    plus a gathered input row unless the filter is 1x1 without padding; 0 for grouped convolutions."""
    if fields["filter_in_c"] != fields["in_c"]:
        return 0
    k = fields["k_h"] * fields["k_w"] * fields["in_c"]
    pointwise = fields["k_h"] == fields["k_w"] == 1 and fields["pad_h"] == fields["pad_w"] == 0
    return 4 * k + (0 if pointwise else k)


def pointwise_in_place(fields: dict) -> bool:
    """Whether ep_conv2d_s8 can write its output over its input: a 1x1 convolution, stride 1, no
    groups, no more output than input channels. Output pixel n then only covers input pixels
    <= n, which the kernel has read (into its scratch) before writing pixel n."""
    return (fields["k_h"] == fields["k_w"] == fields["stride_h"] == fields["stride_w"] == 1
            and fields["pad_h"] == fields["pad_w"] == 0 and fields["filter_in_c"] == fields["in_c"]
            and fields["out_c"] <= fields["in_c"])


def conv_setup(op: Op, graph: Graph, ctx: Lowering, row_terms: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Checks a CONV_2D / DEPTHWISE_CONV_2D, emits its ep_channel_quant table (`row_terms` added to
    the biases: constant parts of accumulators a kernel leaves out) and returns its ep_conv_params
    fields and its weights per output channel [out_c, taps]."""
    (inp, filt, *rest), (out,) = _tensors(op, graph)
    bias = rest[0] if rest else None
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    _require_int8(op, graph, inp, filt, out)
    fields = _conv_fields(op, graph, inp, filt, out, depthwise)
    _filter_checks(op, graph, filt, bias, fields["out_c"])
    name, channels = f"op{op.index}", fields["out_c"]
    multipliers, shifts = requant.quantize_multipliers(_real_multipliers(inp, filt, out, channels))
    # per output channel, its taps' weights: [out_c, taps]
    taps = (np.moveaxis(filt.data, 3, 0) if depthwise else filt.data).reshape(channels, -1)
    acc_min, acc_max = fc_accumulator_range(taps, None if bias is None else bias.data, fields["input_offset"], 0)
    fields["requantize_fast"] = int(requantize_fast_proven(acc_min, acc_max, shifts))
    biases = None if bias is None else bias.data
    if row_terms is not None:
        biases = row_terms + (0 if biases is None else np.asarray(biases, np.int64))
    ctx.array(f"{name}_quant", "ep_channel_quant",
              channel_quant_table(multipliers, shifts, biases, channels, fields["output_offset"]),
              "per output channel: bias, requantization (multiplier, shift) and its fast form"
              + ("; bias + the accumulator's constant part" if row_terms is not None else ""))
    return fields, taps


def lower_conv(op: Op, graph: Graph, ctx: Lowering) -> Step:
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    fields, taps = conv_setup(op, graph, ctx)
    name, out = f"op{op.index}", graph.tensors[op.outputs[0]]
    x_arg = ctx.operand(op.inputs[0])
    weights = ctx.filter(op, op.inputs[1])
    args = [", ", x_arg, f", {weights.arg}, {name}_quant, "]
    structs = [CStruct("ep_conv_params", name, fields), *weights.structs]
    if weights.packed:  # one output channel's weights decoded at a time into the scratch
        kernel = "ep_depthwise_conv2d_packed_s8" if depthwise else "ep_conv2d_packed_s8"
        return Step(op, [f"{kernel}(&", name, *args, ScratchRef(), ", ", Ref(op.outputs[0]), ");"], structs,
                    macs=out.size * taps.shape[1], scratch=weights.scratch)
    if depthwise:
        return Step(op, ["ep_depthwise_conv2d_s8(&", name, *args, Ref(op.outputs[0]), ");"], structs,
                    macs=out.size * taps.shape[1])
    scratch = conv_scratch_bytes(fields)
    if pointwise_in_place(fields) and op.outputs[0] not in ctx.outputs and ctx.last_use(op, op.inputs[0]):
        ctx.aliases[op.outputs[0]] = op.inputs[0]  # the kernel reads each pixel before writing it
    return Step(op, ["ep_conv2d_s8(&", name, *args, ScratchRef() if scratch else "NULL", ", ", Ref(op.outputs[0]),
                     ");"], structs, macs=out.size * taps.shape[1], scratch=scratch)


def fc_setup(op: Op, graph: Graph, ctx: Lowering) -> tuple[dict, str]:
    """Checks a FULLY_CONNECTED, emits its rescale arrays and returns its ep_fc_params fields and
    the kernel's multiplier, shift, scale arguments."""
    (inp, filt, *rest), (out,) = _tensors(op, graph)
    bias = rest[0] if rest else None
    _require_int8(op, graph, inp, filt, out)
    if op.options.get("weights_format", 0) != 0 or len(filt.shape) != 2:
        raise unsupported(op, graph, "shuffled or non-2-D weights")
    out_depth, in_depth = filt.shape
    if filt.zero_points is not None and len(filt.scales) > 1 and np.any(filt.zero_points != 0):
        raise unsupported(op, graph, "per-channel filter zero point != 0")
    if not filt.is_constant or len(filt.scales) not in (1, out_depth):
        raise unsupported(op, graph, "non-constant filter" if not filt.is_constant else "filter scales")
    if bias is not None and (bias.dtype != "int32" or not bias.is_constant):
        raise unsupported(op, graph, f"{bias.dtype} bias")
    if inp.size % in_depth or out.size != inp.size // in_depth * out_depth:
        raise InputError(f"{graph.source}: FULLY_CONNECTED at {graph.node_label(op)}: shapes {list(inp.shape)} x "
                         f"{list(filt.shape)} -> {list(out.shape)} do not match")
    act_min, act_max = _activation(op, graph, out)
    name = f"op{op.index}"
    scales = requant.fc_output_scale(inp.scale, filt.scales, out.scale)
    per_channel = int(scales.size > 1)
    fields = {"batches": inp.size // in_depth, "in_depth": in_depth, "out_depth": out_depth,
              "input_offset": -inp.zero_point, "filter_offset": 0 if per_channel else -filt.zero_point,
              "output_offset": out.zero_point, "act_min": act_min, "act_max": act_max, "per_channel": per_channel}
    return fields, _fc_rescale_arrays(op, graph, ctx, name, scales, fields, filt, bias)


def fc_bias_arg(op: Op, graph: Graph, ctx: Lowering, fields: dict) -> str:
    """The bias argument of a FULLY_CONNECTED kernel: with the input zero point's share folded in
    (then fields["input_offset"] becomes 0) where it can be, else the bias tensor, or NULL."""
    filt = graph.tensors[op.inputs[1]]
    bias = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    folded = fc_folded_bias(filt.data, None if bias is None else bias.data, fields["input_offset"])
    if fields["filter_offset"] != 0 or fields["input_offset"] == 0 or folded is None:
        return ctx.operand(op.inputs[2]) if bias is not None else "NULL"
    # the same accumulators with the input zero point's share precomputed: the kernel's inner
    # loop is then a plain dot product
    fields["input_offset"] = 0
    return ctx.array(f"op{op.index}_bias", "int32_t", folded,
                     "bias + input_offset * sum of the row's weights (input zero point folded in)")


def lower_fully_connected(op: Op, graph: Graph, ctx: Lowering) -> Step:
    fields, rescale = fc_setup(op, graph, ctx)
    bias_arg = fc_bias_arg(op, graph, ctx, fields)
    name, out, in_depth = f"op{op.index}", graph.tensors[op.outputs[0]], fields["in_depth"]
    x_arg = ctx.operand(op.inputs[0])
    weights = ctx.filter(op, op.inputs[1])
    structs = [CStruct("ep_fc_params", name, fields), *weights.structs]
    if weights.packed:
        return Step(op, [f"ep_fully_connected_packed_s8(&{name}, ", x_arg, f", {weights.arg}, ", bias_arg,
                         f", {rescale}, ", ScratchRef() if weights.scratch else "NULL", ", ", Ref(op.outputs[0]),
                         ");"], structs, macs=out.size * in_depth, scratch=weights.scratch)
    return Step(op, [f"ep_fully_connected_s8(&{name}, ", x_arg, f", {weights.arg}, ", bias_arg, f", {rescale}, ",
                     Ref(op.outputs[0]), ");"], structs, macs=out.size * in_depth)


def fc_folded_bias(weights: np.ndarray, bias: np.ndarray | None, input_offset: int) -> np.ndarray | None:
    """bias + input_offset * (sum of each row's weights), as int32: sum (x + offset) * w + bias
    = sum x * w + this. None if some value does not fit int32."""
    rows = np.asarray(weights, np.int64).reshape(len(weights), -1)
    folded = input_offset * rows.sum(axis=1) + (0 if bias is None else np.asarray(bias, np.int64))
    if np.any(folded < -(1 << 31)) or np.any(folded >= 1 << 31):
        return None
    return folded.astype(np.int32)


def fc_accumulator_range(weights: np.ndarray, bias: np.ndarray | None, input_offset: int,
                         filter_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the smallest and largest accumulator any int8 input can produce."""
    w = weights.astype(np.int64) + filter_offset
    lo, hi = w * (-128 + input_offset), w * (127 + input_offset)
    b = np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    return b + np.minimum(lo, hi).sum(axis=1), b + np.maximum(lo, hi).sum(axis=1)


def _fc_rescale_arrays(op: Op, graph: Graph, ctx: Lowering, name: str, scales: np.ndarray, fields: dict,
                       filt: Tensor, bias: Tensor | None) -> str:
    """The kernel's multiplier, shift, scale arguments: integer-only where it is proven exact."""
    acc_min, acc_max = fc_accumulator_range(filt.data, None if bias is None else bias.data, fields["input_offset"],
                                            fields["filter_offset"])
    channels = range(fields["out_depth"]) if scales.size > 1 else [None]
    lo = [int(acc_min.min() if c is None else acc_min[c]) for c in channels]
    hi = [int(acc_max.max() if c is None else acc_max[c]) for c in channels]
    comment = "per channel" if scales.size > 1 else "per tensor"
    mismatch = [requant.fc_fixed_point_mismatch(float(s), fields["output_offset"], fields["act_min"], fields["act_max"],
                                                a, b) for s, a, b in zip(scales, lo, hi)]
    if all(m is None for m in mismatch):
        pairs = [requant.fc_multiplier(float(s)) for s in scales]
        ctx.array(f"{name}_multiplier", "uint64_t", np.array([m for m, _ in pairs], dtype=np.uint64),
                  f"rescale = multiplier / 2^shift exactly, {comment}: same bytes as LiteRT's double rescale")
        ctx.array(f"{name}_shift", "int32_t", np.array([n for _, n in pairs], dtype=np.int32), f"shifts, {comment}")
        return f"{name}_multiplier, {name}_shift, NULL"
    acc = next(m for m in mismatch if m is not None)
    ctx.notes.append(f"op {op.index} FULLY_CONNECTED ({graph.node_label(op)}): rescaled in double precision "
                     f"(a fixed-point multiply would differ from LiteRT at accumulator {acc})")
    ctx.array(f"{name}_scale", "double", scales, f"input_scale * filter_scale / output_scale, {comment} "
              "(LiteRT's reference FULLY_CONNECTED rescales in double precision)")
    return f"NULL, NULL, {name}_scale"


# ------------------------------------------------------------------ pooling and reductions

def lower_pool(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp,), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp, out)
    if len(inp.shape) != 4 or len(out.shape) != 4:
        raise unsupported(op, graph, "not 4-D NHWC")
    if not _same_quantization(inp, out):
        raise unsupported(op, graph, "input and output quantization differ")
    batches, in_h, in_w, channels = inp.shape
    _, out_h, out_w, _ = out.shape
    filter_hw = (op.options.get("filter_height", 1), op.options.get("filter_width", 1))
    pad_h, pad_w = _window(op, graph, (in_h, in_w), filter_hw, (out_h, out_w))
    act_min, act_max = _activation(op, graph, out)
    name = f"op{op.index}"
    fields = {"batches": batches, "in_h": in_h, "in_w": in_w, "channels": channels, "out_h": out_h, "out_w": out_w,
              "filter_h": filter_hw[0], "filter_w": filter_hw[1], "stride_h": op.options.get("stride_h", 1),
              "stride_w": op.options.get("stride_w", 1), "pad_h": pad_h, "pad_w": pad_w,
              "act_min": act_min, "act_max": act_max}
    kernel = "ep_average_pool_s8" if op.name == "AVERAGE_POOL_2D" else "ep_max_pool_s8"
    return Step(op, [f"{kernel}(&{name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_pool_params", name, fields)])


def _strides(shape) -> list[int]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.insert(0, step)
        step *= dim
    return strides


def _axes(op: Op, graph: Graph, index: int, ndim: int) -> list[int]:
    tensor = graph.tensors[index]
    if not tensor.is_constant:
        raise unsupported(op, graph, "axes not constant")
    return sorted({int(a) % ndim for a in np.ravel(tensor.data)})


def lower_mean(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp, _), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp, out)
    if not 0 < len(inp.shape) <= MAX_DIMS:
        raise unsupported(op, graph, f"{len(inp.shape)}-D input")
    axes = _axes(op, graph, op.inputs[1], len(inp.shape))
    strides = _strides(inp.shape)
    kept = [d for d in range(len(inp.shape)) if d not in axes] or []
    count = int(np.prod([inp.shape[d] for d in axes], dtype=np.int64))
    multiplier, shift = requant.mean_params(inp.scale, out.scale, count)
    name = f"op{op.index}"
    fields = {"kept_dims": len(kept), "kept_shape": [inp.shape[d] for d in kept] or [1],
              "kept_strides": [strides[d] for d in kept] or [0], "reduced_dims": len(axes),
              "reduced_shape": [inp.shape[d] for d in axes], "reduced_strides": [strides[d] for d in axes],
              "count": count, "input_zero_point": inp.zero_point, "output_zero_point": out.zero_point,
              "multiplier": multiplier, "shift": shift}
    return Step(op, [f"ep_mean_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_mean_params", name, fields)])


# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {
    "CONV_2D": lower_conv, "DEPTHWISE_CONV_2D": lower_conv,
    "FULLY_CONNECTED": lower_fully_connected,
    "AVERAGE_POOL_2D": lower_pool, "MAX_POOL_2D": lower_pool,
    "MEAN": lower_mean,
}
