"""Elementwise ops -> C kernel calls: ADD, SOFTMAX, QUANTIZE, DEQUANTIZE; comparisons (GREATER_EQUAL,
GREATER, LESS, LESS_EQUAL, EQUAL, NOT_EQUAL: int8 in, bool out) and SELECT_V2.

One op family of the lowerings (the shared parts are in `lowering`); the `LOWERINGS` table at
the end goes into the registry built in `lowerings`.

A sign function (x >= 0 ? 1 : -1, e.g. edgeport.training.lowbit.Sign) reaches an int8 .tflite as
GREATER_EQUAL (int8 input vs an int8 constant) then SELECT_V2 (the bool, two int8 constants); both
run here as LiteRT runs them. A comparison with a constant of one value is an interval test on
the other input's int8 values, computed here once with TFLite's arithmetic (`compare_int8`).
"""

from __future__ import annotations

import numpy as np

from edgeport.mcu.compiler import requant
from edgeport.mcu.compiler.lowering import (
    MAX_DIMS,
    CStruct,
    Lower,
    Lowering,
    Ref,
    Step,
    _activation,
    _require_int8,
    _strides,
    _tensors,
    unsupported,
)
from edgeport.mcu.compiler.tflite_ir import Graph, Op, Tensor

# op -> (the kernels' EP_* code, its comparison on the rescaled int32 values)
COMPARISONS = {"GREATER_EQUAL": (0, np.greater_equal), "GREATER": (1, np.greater), "LESS": (2, np.less),
               "LESS_EQUAL": (3, np.less_equal), "EQUAL": (4, np.equal), "NOT_EQUAL": (5, np.not_equal)}
COMPARISON_LEFT_SHIFT = 8  # TFLite's ComparisonQuantized
INT8_VALUES = np.arange(-128, 128)


# ------------------------------------------------------------------ arithmetic

def broadcast_strides(shape1, shape2, out_shape) -> tuple[list[int], list[int], list[int]]:
    """Output shape (ranks aligned to the right) and each input's strides over it, 0 where the
    input is broadcast (TFLite's BroadcastAdd6DSlow indexing)."""
    return list(out_shape), input_strides(shape1, out_shape), input_strides(shape2, out_shape)


def input_strides(shape, out_shape) -> list[int]:
    """An input's element strides over the output's dimensions (ranks aligned to the right), 0
    where the input is broadcast."""
    rank = len(out_shape)
    padded = [1] * (rank - len(shape)) + list(shape)
    strides = _strides(padded)
    return [0 if padded[d] == 1 and out_shape[d] != 1 else strides[d] for d in range(rank)]


def lower_add(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (a, b), (out,) = _tensors(op, graph)
    _require_int8(op, graph, a, b, out)
    try:
        params = requant.add_params(a.scale, b.scale, out.scale)
    except ValueError as exc:
        raise unsupported(op, graph, str(exc)) from None
    act_min, act_max = _activation(op, graph, out)
    name = f"op{op.index}"
    broadcast = tuple(a.shape) != tuple(b.shape)
    if broadcast and len(out.shape) > MAX_DIMS:
        raise unsupported(op, graph, f"broadcast over {len(out.shape)} dimensions")
    shape, strides1, strides2 = broadcast_strides(a.shape, b.shape, out.shape) if broadcast else ([1], [0], [0])
    fields = {"size": out.size, "input1_offset": -a.zero_point, "input2_offset": -b.zero_point,
              "output_offset": out.zero_point, **params, "act_min": act_min, "act_max": act_max,
              "broadcast": int(broadcast), "dims": len(shape), "shape": shape, "strides1": strides1,
              "strides2": strides2}
    # in place: the output takes the bytes of an input of its own shape that nothing reads later
    # (ep_add_s8 reads element i of such an input before writing element i): a residual block's
    # sum needs no buffer of its own
    for tensor, index in ((a, op.inputs[0]), (b, op.inputs[1])):
        if tuple(tensor.shape) == tuple(out.shape) and not tensor.is_constant and op.outputs[0] not in ctx.outputs \
                and ctx.last_use(op, index):
            ctx.aliases[op.outputs[0]] = index
            break
    return Step(op, [f"ep_add_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", ctx.operand(op.inputs[1]), ", ",
                     Ref(op.outputs[0]), ");"], [CStruct("ep_add_params", name, fields)])


def lower_softmax(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp,), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp, out)
    if out.zero_point != -128 or abs(out.scale - 1 / 256) > 0.001 / 256:
        raise unsupported(op, graph, "int8 output not scale 1/256, zero point -128")
    multiplier, shift, diff_min = requant.softmax_params(op.options.get("beta", 1.0), inp.scale)
    depth = inp.shape[-1] if inp.shape else 1
    name = f"op{op.index}"
    fields = {"outer": inp.size // depth, "depth": depth, "input_multiplier": multiplier,
              "input_left_shift": shift, "diff_min": diff_min}
    return Step(op, [f"ep_softmax_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_softmax_params", name, fields)])


def lower_quantize(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp,), (out,) = _tensors(op, graph)
    _require_int8(op, graph, out)
    if out.per_channel:
        raise unsupported(op, graph, "per-channel")
    name = f"op{op.index}"
    if inp.dtype == "float32":
        fields = {"size": out.size, "scale": np.float32(out.scale), "zero_point": out.zero_point}
        return Step(op, [f"ep_quantize_f32_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                    [CStruct("ep_affine_params", name, fields)])
    _require_int8(op, graph, inp)
    multiplier, shift = requant.quantize_multiplier(float(inp.scale) / float(out.scale))
    fields = {"size": out.size, "input_zero_point": inp.zero_point, "output_zero_point": out.zero_point,
              "multiplier": multiplier, "shift": shift}
    return Step(op, [f"ep_requantize_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_requantize_params", name, fields)])


def lower_dequantize(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp,), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp)
    if out.dtype != "float32" or inp.per_channel:
        raise unsupported(op, graph, f"{inp.dtype} -> {out.dtype}")
    name = f"op{op.index}"
    fields = {"size": inp.size, "scale": np.float32(inp.scale), "zero_point": inp.zero_point}
    return Step(op, [f"ep_dequantize_s8_f32(&{name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_affine_params", name, fields)])


# ------------------------------------------------------------------ comparisons and select

def coalesce_dims(shape, *strides) -> tuple[list[int], list[list[int]]]:
    """The same walk over fewer dimensions: size-1 dimensions dropped, and a dimension merged into
    the next one wherever every operand's stride allows (stride = next stride x next size), so a
    kernel's innermost loop runs as long as possible. Returns (shape, strides per operand)."""
    keep = [d for d in range(len(shape)) if shape[d] != 1] or [len(shape) - 1]
    dims, steps = [shape[d] for d in keep], [[s[d] for d in keep] for s in strides]
    for d in range(len(dims) - 2, -1, -1):
        if all(s[d] == s[d + 1] * dims[d + 1] for s in steps):
            dims[d:d + 2] = [dims[d] * dims[d + 1]]
            for s in steps:
                s[d:d + 2] = [s[d + 1]]
    return dims, steps


def comparison_scaling(tensor: Tensor) -> tuple[int, int, int] | None:
    """(offset, multiplier, shift) TFLite's ComparisonQuantized rescales an int8 input with:
    -zero point and QuantizeMultiplier(scale). None for a scale >= 1 (a left shift, which
    TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp does not take)."""
    multiplier, shift = requant.quantize_multiplier(float(tensor.scale))
    return None if shift > 0 else (-tensor.zero_point, multiplier, shift)


def compare_int8(op_name: str, x1, x2, scaling1: tuple[int, int, int], scaling2: tuple[int, int, int]) -> np.ndarray:
    """TFLite's ComparisonWithScaling on int8 arrays: each (x + offset) * 2^8 rescaled by its
    multiplier and shift, then compared (bool array)."""
    def rescaled(x, scaling):
        offset, multiplier, shift = scaling
        shifted = (np.asarray(x, np.int64) + offset) << COMPARISON_LEFT_SHIFT
        return requant.multiply_by_quantized_multiplier(shifted, multiplier, shift)

    return COMPARISONS[op_name][1](rescaled(x1, scaling1), rescaled(x2, scaling2))


def truth_interval(truth: np.ndarray) -> tuple[int, int, int] | None:
    """(lo, hi, invert) with truth[x + 128] == ((lo <= x <= hi) != invert) for every int8 x, or
    None if the true (and the false) values do not form an interval."""
    if not np.any(truth):
        return -128, 127, 1  # all false: outside the whole range
    for invert in (0, 1):
        inside = np.flatnonzero(truth != bool(invert))
        if inside[-1] - inside[0] + 1 == inside.size:
            return int(inside[0]) - 128, int(inside[-1]) - 128, invert
    return None


def lower_comparison(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (a, b), (out,) = _tensors(op, graph)
    _require_int8(op, graph, a, b)
    if out.dtype != "bool":
        raise unsupported(op, graph, f"{out.dtype} output")
    scalings = [comparison_scaling(t) for t in (a, b)]
    if None in scalings:
        raise unsupported(op, graph, "an input scale >= 1")
    name = f"op{op.index}"
    out_arg = ["(uint8_t *)", Ref(op.outputs[0])]
    for const, other in ((1, 0), (0, 1)):  # a constant of one value: an interval of the other's values
        tensor, variable = (a, b)[const], (a, b)[other]
        if not tensor.is_constant or len(np.unique(tensor.data)) != 1 or variable.size != out.size:
            continue
        fixed = np.full(INT8_VALUES.size, np.ravel(tensor.data)[0])
        pair = (INT8_VALUES, fixed) if const == 1 else (fixed, INT8_VALUES)
        interval = truth_interval(compare_int8(op.name, *pair, *scalings))
        if interval is not None:
            fields = dict(zip(("size", "lo", "hi", "invert"), (out.size, *interval)))
            return Step(op, [f"ep_compare_range_s8(&{name}, ", ctx.operand(op.inputs[other]), ", ", *out_arg, ");"],
                        [CStruct("ep_compare_range_params", name, fields)])
    broadcast = tuple(a.shape) != tuple(b.shape)
    if broadcast and len(out.shape) > MAX_DIMS:
        raise unsupported(op, graph, f"broadcast over {len(out.shape)} dimensions")
    shape, (strides1, strides2) = coalesce_dims(*broadcast_strides(a.shape, b.shape, out.shape)) if broadcast \
        else ([1], ([0], [0]))
    fields = {"size": out.size, "op": COMPARISONS[op.name][0],
              **dict(zip(("input1_offset", "input1_multiplier", "input1_shift"), scalings[0])),
              **dict(zip(("input2_offset", "input2_multiplier", "input2_shift"), scalings[1])),
              "broadcast": int(broadcast), "dims": len(shape), "shape": shape, "strides1": strides1,
              "strides2": strides2}
    return Step(op, [f"ep_compare_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", ctx.operand(op.inputs[1]), ", ",
                     *out_arg, ");"], [CStruct("ep_compare_params", name, fields)])


def lower_select_v2(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """condition ? x : y, int8 bytes as they are (LiteRT's SELECT_V2 does not requantize)."""
    (condition, x, y), (out,) = _tensors(op, graph)
    if condition.dtype != "bool" or {x.dtype, y.dtype, out.dtype} != {"int8"}:
        raise unsupported(op, graph, f"{condition.dtype} condition, {x.dtype} / {y.dtype} -> {out.dtype}")
    shapes = [tuple(t.shape) for t in (condition, x, y)]
    broadcast = any(shape != tuple(out.shape) for shape in shapes)
    if broadcast and len(out.shape) > MAX_DIMS:
        raise unsupported(op, graph, f"broadcast over {len(out.shape)} dimensions")
    dims, strides = coalesce_dims(list(out.shape), *(input_strides(s, out.shape) for s in shapes)) if broadcast \
        else ([1], [[0]] * 3)
    name = f"op{op.index}"
    fields = {"size": out.size, "broadcast": int(broadcast), "dims": len(dims), "shape": dims,
              "strides_condition": strides[0], "strides_x": strides[1], "strides_y": strides[2]}
    return Step(op, [f"ep_select_s8(&{name}, (const uint8_t *)", ctx.operand(op.inputs[0]), ", ",
                     ctx.operand(op.inputs[1]), ", ", ctx.operand(op.inputs[2]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_select_params", name, fields)])


# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {
    "ADD": lower_add, "SOFTMAX": lower_softmax, "QUANTIZE": lower_quantize, "DEQUANTIZE": lower_dequantize,
    **dict.fromkeys(COMPARISONS, lower_comparison),
    "SELECT_V2": lower_select_v2,
}
