"""int16x8 layers -> C kernel calls (kernels/ep_int16.c): CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED on int16 activations with int8 weights, ADD, QUANTIZE (int8 <-> int16, int16 ->
int16, float -> int16), DEQUANTIZE (int16 -> float), AVERAGE_POOL_2D, MAX_POOL_2D and MEAN on
int16, as LiteRT's reference kernels compute them (RESHAPE, SQUEEZE, EXPAND_DIMS of int16 tensors
are the registry's `lower_reshape`: an alias).

These op names are registered for int8 by other families (an op name may be in one table only),
so `lowerings.lower_op` asks `int16_lowering` first: it returns this module's lowering of an op
that reads or writes an int16 tensor, and None otherwise; the int8 lowerings keep refusing int16
tensors of the ops not listed in `LOWERINGS` here.

LiteRT's int16x8 arithmetic (tflite/kernels/conv.cc, depthwise_conv.cc, fully_connected.cc,
add.cc, quantize.cc and their reference kernels): int16 activations have zero point 0; the
convolutions sum int16 x int8 products and the int64 bias in int64 and requantize with the int64
overload of MultiplyByQuantizedMultiplier (the multiplier rounded to 16 bits, one rounding; it
assumes |acc| < 2^47 and shift < 8, which the generator checks); FULLY_CONNECTED rescales its int64
accumulator in double precision like the int8 kernel; ADD takes the int8 arithmetic with a left
shift of 15, or, with `pot_scale_int16` and three power-of-two scales, a saturating add of one
input and the other shifted; QUANTIZE requantizes with the int32 MultiplyByQuantizedMultiplier.
Int16 tensors are passed to the kernels as `int16_t` pointers into the arena (2-byte aligned).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from edgeport.mcu.compiler import requant
from edgeport.mcu.compiler.lowering import (
    MAX_DIMS,
    CStruct,
    Lower,
    Lowering,
    Ref,
    Step,
    _conv_fields,
    _real_multipliers,
    _tensors,
    lower_mean,
    lower_pool,
    unsupported,
)
from edgeport.mcu.compiler.lowering_elementwise import broadcast_strides
from edgeport.mcu.compiler.tflite_ir import Graph, Op, Tensor

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
MAX_ACC = 1 << 47      # LiteRT's int64 MultiplyByQuantizedMultiplier assumes |acc| < 2^47
MAX_SHIFT = 7          # ... and shift < 8
MAX_LEFT_SHIFT = 31    # the int32 MultiplyByQuantizedMultiplier's x * 2^shift
POT_TOLERANCE = 1e-3   # LiteRT's CheckedLog2: a scale within 1e-3 of a power of two (in log2) is one
IN16, OUT16 = "(const int16_t *)(const void *)", "(int16_t *)(void *)"  # arena bytes as int16 tensors


# ------------------------------------------------------------------ checks and shared parts

def _int16(op: Op, graph: Graph, *tensors: Tensor) -> None:
    """int16 activations as LiteRT's int16 kernels take them: one scale, zero point 0."""
    for t in tensors:
        if t.dtype != "int16" or not t.quantized:
            raise unsupported(op, graph, f"{t.dtype} '{t.label}' where int16x8 takes quantized int16")
        if t.per_channel or t.zero_point != 0:
            raise unsupported(op, graph, f"int16 '{t.label}' quantized per channel or with a zero point")


def _operand(op: Op, graph: Graph, ctx: Lowering, index: int) -> list:
    """An int16 input of a kernel (an activation: int16 constants have no C array type here)."""
    if graph.tensors[index].is_constant:
        raise unsupported(op, graph, f"constant int16 operand '{graph.tensors[index].label}'")
    return [IN16, ctx.operand(index)]


def _activation16(op: Op, graph: Graph, out: Tensor) -> tuple[int, int]:
    """The fused activation as an int16 clamp (CalculateActivationRangeQuantized)."""
    name = op.options.get("fused_activation_function", "NONE")
    try:
        return requant.activation_range(name, out.scale, out.zero_point, INT16_MIN, INT16_MAX)
    except ValueError:
        raise unsupported(op, graph, f"fused {name}") from None


def _int8_weights(op: Op, graph: Graph, filt: Tensor, bias: Tensor | None, channels: int) -> None:
    if filt.dtype != "int8" or not filt.is_constant:
        raise unsupported(op, graph, f"{filt.dtype} filter" if filt.dtype != "int8" else "non-constant filter")
    if len(filt.scales) not in (1, channels):
        raise unsupported(op, graph, f"{len(filt.scales)} filter scales for {channels} channels")
    if bias is not None and (bias.dtype != "int64" or not bias.is_constant):
        # int32 biases take another LiteRT path (quantized_bias_type INT32): not implemented here
        raise unsupported(op, graph, f"{bias.dtype} bias (int16x8 layers take a constant int64 bias)")


def _weights(op: Op, ctx: Lowering, index: int) -> str:
    """The filter as a dense const array (the int16 kernels read no compressed weights)."""
    ctx.record_storage(op, index, "dense", None, ctx.graph.tensors[index].nbytes)
    return ctx.const(index)


def accumulator_range(rows: np.ndarray, bias: np.ndarray | None, filter_offset: int = 0) -> tuple[np.ndarray, ...]:
    """Per output channel, the smallest and largest accumulator any int16 input gives: bias +
    sum over the row of input * (weight + filter_offset), exactly (int64)."""
    w = np.asarray(rows, np.int64).reshape(len(rows), -1) + filter_offset
    lo, hi = w * INT16_MIN, w * INT16_MAX
    b = np.zeros(len(w), np.int64) if bias is None else np.asarray(bias, np.int64)
    return b + np.minimum(lo, hi).sum(axis=1), b + np.maximum(lo, hi).sum(axis=1)


def _bias_array(ctx: Lowering, name: str, bias: Tensor | None) -> str:
    """int64 biases as their two's complement bits in a uint64_t array (NULL without a bias)."""
    if bias is None:
        return "NULL"
    return ctx.array(f"{name}_bias", "uint64_t", np.asarray(bias.data, np.int64).view(np.uint64),
                     "int64 bias per output channel (two's complement bits)")


def _checked_bias(op: Op, graph: Graph, bias: Tensor | None) -> np.ndarray | None:
    """The bias values, refused beyond 2^47 (which also keeps `accumulator_range` exact in int64)."""
    if bias is None:
        return None
    values = np.asarray(bias.data, np.int64)
    if np.any((values <= -MAX_ACC) | (values >= MAX_ACC)):  # not np.abs: it wraps at INT64_MIN
        raise unsupported(op, graph, "bias beyond 2^47")
    return values


# ------------------------------------------------------------------ convolutions and FULLY_CONNECTED

def lower_conv16(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """CONV_2D / DEPTHWISE_CONV_2D int16x8: ConvPerChannel / DepthwiseConvPerChannel on int16."""
    (inp, filt, *rest), (out,) = _tensors(op, graph)
    bias = rest[0] if rest else None
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    _int16(op, graph, inp, out)
    channels = out.shape[-1] if out.shape else 1
    _int8_weights(op, graph, filt, bias, channels)
    if filt.zero_points is not None and np.any(filt.zero_points != 0):
        raise unsupported(op, graph, "filter zero point != 0")
    fields = _conv_fields(op, graph, inp, filt, out, depthwise)
    fields["act_min"], fields["act_max"] = _activation16(op, graph, out)
    fields["requantize_fast"] = 0
    multipliers, shifts = requant.quantize_multipliers(_real_multipliers(inp, filt, out, channels))
    if np.any(shifts > MAX_SHIFT):
        raise unsupported(op, graph, "output multiplier >= 2^7 (beyond LiteRT's int64 requantization)")
    taps = (np.moveaxis(filt.data, 3, 0) if depthwise else filt.data).reshape(channels, -1)
    lo, hi = accumulator_range(taps, _checked_bias(op, graph, bias))
    if max(-int(lo.min()), int(hi.max())) >= MAX_ACC:
        raise unsupported(op, graph, "accumulator beyond 2^47 (LiteRT's int64 requantization range)")
    name = f"op{op.index}"
    bias_arg = _bias_array(ctx, name, bias)
    ctx.array(f"{name}_multiplier", "int32_t", multipliers, "requantization multiplier per output channel (Q0.31)")
    ctx.array(f"{name}_shift", "int32_t", shifts, "requantization shift per output channel")
    kernel = "ep_depthwise_conv2d_s16" if depthwise else "ep_conv2d_s16"
    code = [f"{kernel}(&{name}, ", *_operand(op, graph, ctx, op.inputs[0]),
            f", {_weights(op, ctx, op.inputs[1])}, {bias_arg}, {name}_multiplier, {name}_shift, ", OUT16,
            Ref(op.outputs[0]), ");"]
    return Step(op, code, [CStruct("ep_conv_params", name, fields)], macs=out.size * taps.shape[1])


def _fc_rescale(op: Op, graph: Graph, ctx: Lowering, scales: np.ndarray, fields: dict, lo: np.ndarray,
                hi: np.ndarray) -> str:
    """The kernel's multiplier, shift, scale arguments: LiteRT's double rescale as an exact integer
    fraction where `requant.fc_fixed_point_mismatch` proves it the same for every accumulator the
    channel can produce (all within int32), else the doubles."""
    name, per_channel = f"op{op.index}", scales.size > 1
    lows = lo if per_channel else [lo.min()]
    highs = hi if per_channel else [hi.max()]
    if any(max(-int(a), int(b)) * float(s) >= 2.0 ** 31 for s, a, b in zip(scales, lows, highs)):
        raise unsupported(op, graph, "rescaled accumulator beyond int32 (LiteRT's cast is undefined there)")
    comment = "per channel" if per_channel else "per tensor"
    exact = all(requant.fc_fixed_point_mismatch(float(s), fields["output_offset"], fields["act_min"],
                                                fields["act_max"], int(a), int(b)) is None
                for s, a, b in zip(scales, lows, highs))
    if exact:
        pairs = [requant.fc_multiplier(float(s)) for s in scales]
        ctx.array(f"{name}_multiplier", "uint64_t", np.array([m for m, _ in pairs], np.uint64),
                  f"rescale = multiplier / 2^shift exactly, {comment}: same bytes as LiteRT's double rescale")
        ctx.array(f"{name}_shift", "int32_t", np.array([n for _, n in pairs], np.int32), f"shifts, {comment}")
        return f"{name}_multiplier, {name}_shift, NULL"
    ctx.notes.append(f"op {op.index} FULLY_CONNECTED int16 ({graph.node_label(op)}): rescaled in double precision "
                     "(its accumulators leave int32, or a fixed-point multiply would differ from LiteRT)")
    ctx.array(f"{name}_scale", "double", scales, f"input_scale * filter_scale / output_scale, {comment} "
              "(LiteRT's reference FULLY_CONNECTED rescales in double precision)")
    return f"NULL, NULL, {name}_scale"


def lower_fully_connected16(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """FULLY_CONNECTED int16x8, per-tensor (filter zero point allowed) or per-channel weights."""
    (inp, filt, *rest), (out,) = _tensors(op, graph)
    bias = rest[0] if rest else None
    _int16(op, graph, inp, out)
    if op.options.get("weights_format", 0) != 0 or len(filt.shape) != 2:
        raise unsupported(op, graph, "shuffled or non-2-D weights")
    out_depth, in_depth = filt.shape
    _int8_weights(op, graph, filt, bias, out_depth)
    per_channel = len(filt.scales) > 1
    if per_channel and filt.zero_points is not None and np.any(filt.zero_points != 0):
        raise unsupported(op, graph, "per-channel filter zero point != 0")
    if inp.size % in_depth or out.size != inp.size // in_depth * out_depth:
        raise unsupported(op, graph, f"shapes {list(inp.shape)} x {list(filt.shape)} -> {list(out.shape)}")
    act_min, act_max = _activation16(op, graph, out)
    filter_offset = 0 if per_channel else -filt.zero_point
    fields = {"batches": inp.size // in_depth, "in_depth": in_depth, "out_depth": out_depth, "input_offset": 0,
              "filter_offset": filter_offset, "output_offset": 0, "act_min": act_min, "act_max": act_max,
              "per_channel": int(per_channel)}
    lo, hi = accumulator_range(filt.data, _checked_bias(op, graph, bias), filter_offset)
    rescale = _fc_rescale(op, graph, ctx, requant.fc_output_scale(inp.scale, filt.scales, out.scale), fields, lo, hi)
    name = f"op{op.index}"
    code = ["ep_fully_connected_s16(&" + name + ", ", *_operand(op, graph, ctx, op.inputs[0]),
            f", {_weights(op, ctx, op.inputs[1])}, {_bias_array(ctx, name, bias)}, {rescale}, ", OUT16,
            Ref(op.outputs[0]), ");"]
    return Step(op, code, [CStruct("ep_fc_params", name, fields)], macs=out.size * in_depth)


# ------------------------------------------------------------------ ADD

def checked_log2(scale: float) -> int | None:
    """LiteRT's CheckedLog2: log2 of a power-of-two scale (within POT_TOLERANCE in log2, rounded),
    else None. ValueError where float32 logarithms could decide otherwise (at the tolerance)."""
    exponent = math.log(float(np.float32(scale))) / math.log(2.0)
    rounded = requant.round_half_away(exponent)
    fraction = abs(exponent - rounded)
    if abs(fraction - POT_TOLERANCE) < 1e-5:
        raise ValueError(f"scale {scale:g} is at LiteRT's power-of-two tolerance")
    return int(rounded) if fraction < POT_TOLERANCE else None


def _pot_shifts(op: Op, graph: Graph, a: Tensor, b: Tensor, out: Tensor) -> tuple[int, int] | None:
    """The input shifts of LiteRT's power-of-two int16 ADD, or None when it takes the general
    path: without `pot_scale_int16` (an ADD without options reads it as false) or when a scale
    is not a power of two."""
    if not op.options.get("pot_scale_int16", False):
        return None
    try:
        logs = [checked_log2(t.scale) for t in (a, b, out)]
    except ValueError as exc:
        raise unsupported(op, graph, str(exc)) from None
    if None in logs:
        return None
    shifts = logs[0] - logs[2], logs[1] - logs[2]
    if min(shifts) < -15 or max(shifts) > 0 or 0 not in shifts:  # LiteRT's Prepare refuses the latter two
        raise unsupported(op, graph, f"power-of-two ADD with input shifts {shifts}")
    return shifts


def lower_add16(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (a, b), (out,) = _tensors(op, graph)
    _int16(op, graph, a, b, out)
    act_min, act_max = _activation16(op, graph, out)
    broadcast = tuple(a.shape) != tuple(b.shape)
    if broadcast and len(out.shape) > MAX_DIMS:
        raise unsupported(op, graph, f"broadcast over {len(out.shape)} dimensions")
    name = f"op{op.index}"
    inputs = [*_operand(op, graph, ctx, op.inputs[0]), ", ", *_operand(op, graph, ctx, op.inputs[1]), ", "]
    shifts = _pot_shifts(op, graph, a, b, out)
    if shifts is not None:
        if broadcast:  # LiteRT's power-of-two kernel has no broadcast
            raise unsupported(op, graph, "power-of-two int16 ADD with broadcast")
        fields = {"size": out.size, "shifted_input": 1 if shifts[0] else 2, "right_shift": -min(shifts),
                  "act_min": act_min, "act_max": act_max}
        return Step(op, [f"ep_add_pot_s16(&{name}, ", *inputs, OUT16, Ref(op.outputs[0]), ");"],
                    [CStruct("ep_add_pot_params", name, fields)])
    try:
        # add.cc's int16 multipliers are its int8 ones with a left shift of 15 instead of 20: the
        # output's real multiplier twice_max / (2^15 * scale) is add_params' with scale / 2^5
        # (powers of two: both products are exact)
        params = {**requant.add_params(a.scale, b.scale, float(out.scale) / 32), "left_shift": 15}
    except ValueError as exc:
        raise unsupported(op, graph, str(exc)) from None
    shape, strides1, strides2 = broadcast_strides(a.shape, b.shape, out.shape) if broadcast else ([1], [0], [0])
    fields = {"size": out.size, "input1_offset": 0, "input2_offset": 0, "output_offset": 0, **params,
              "act_min": act_min, "act_max": act_max, "broadcast": int(broadcast), "dims": len(shape),
              "shape": shape, "strides1": strides1, "strides2": strides2}
    return Step(op, [f"ep_add_s16(&{name}, ", *inputs, OUT16, Ref(op.outputs[0]), ");"],
                [CStruct("ep_add_params", name, fields)])


# ------------------------------------------------------------------ QUANTIZE, DEQUANTIZE

REQUANTIZE_KERNELS = {("int8", "int16"): "ep_requantize_s8_s16", ("int16", "int8"): "ep_requantize_s16_s8",
                      ("int16", "int16"): "ep_requantize_s16"}


def lower_quantize16(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp,), (out,) = _tensors(op, graph)
    kinds = (inp.dtype, out.dtype)
    if out.per_channel or not out.quantized or (kinds not in REQUANTIZE_KERNELS and kinds != ("float32", "int16")):
        raise unsupported(op, graph, f"{inp.dtype} -> {out.dtype}" + (" per channel" if out.per_channel else ""))
    name, out_arg = f"op{op.index}", [OUT16 if out.dtype == "int16" else "", Ref(op.outputs[0])]
    if inp.dtype == "float32":
        fields = {"size": out.size, "scale": np.float32(out.scale), "zero_point": out.zero_point}
        return Step(op, [f"ep_quantize_f32_s16(&{name}, ", ctx.operand(op.inputs[0]), ", ", *out_arg, ");"],
                    [CStruct("ep_affine_params", name, fields)])
    if not inp.quantized or inp.per_channel:
        raise unsupported(op, graph, f"'{inp.label}' not quantized per tensor")
    if kinds == ("int16", "int16"):
        _int16(op, graph, inp, out)  # LiteRT requires zero points 0 here
    multiplier, shift = requant.quantize_multiplier(float(inp.scale) / float(out.scale))
    if shift > MAX_LEFT_SHIFT:
        raise unsupported(op, graph, f"scale ratio {float(inp.scale) / float(out.scale):g} >= 2^31")
    fields = {"size": out.size, "input_zero_point": inp.zero_point, "output_zero_point": out.zero_point,
              "multiplier": multiplier, "shift": shift}
    x_arg = _operand(op, graph, ctx, op.inputs[0]) if inp.dtype == "int16" else [ctx.operand(op.inputs[0])]
    return Step(op, [f"{REQUANTIZE_KERNELS[kinds]}(&{name}, ", *x_arg, ", ", *out_arg, ");"],
                [CStruct("ep_requantize_params", name, fields)])


def lower_dequantize16(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp,), (out,) = _tensors(op, graph)
    if inp.dtype != "int16" or out.dtype != "float32":
        raise unsupported(op, graph, f"{inp.dtype} -> {out.dtype}")
    _int16(op, graph, inp)  # LiteRT's DEQUANTIZE requires int16 zero point 0 too
    name = f"op{op.index}"
    fields = {"size": inp.size, "scale": np.float32(inp.scale), "zero_point": inp.zero_point}
    return Step(op, [f"ep_dequantize_s16_f32(&{name}, ", *_operand(op, graph, ctx, op.inputs[0]), ", ",
                     Ref(op.outputs[0]), ");"], [CStruct("ep_affine_params", name, fields)])


# ------------------------------------------------------------------ pooling, MEAN

def _int8_view(op: Op, graph: Graph) -> Graph:
    """`graph` with the op's int16 tensors relabeled int8, for an int8 lowering whose checks and
    parameter struct (shapes, window, multipliers) are the int16 op's as well."""
    tensors = list(graph.tensors)
    for index in (*op.inputs, *op.outputs):
        if index >= 0 and tensors[index].dtype == "int16":
            tensors[index] = replace(tensors[index], dtype="int8")
    return replace(graph, tensors=tensors)


def lower_pool16(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """AVERAGE_POOL_2D / MAX_POOL_2D on int16: the int8 kernels' arithmetic (a 32-bit sum, the
    average rounded half away from zero), clamped to int16."""
    (inp,), (out,) = _tensors(op, graph)
    _int16(op, graph, inp, out)
    (struct,) = lower_pool(op, _int8_view(op, graph), ctx).structs
    struct.fields["act_min"], struct.fields["act_max"] = _activation16(op, graph, out)
    kernel = "ep_average_pool_s16" if op.name == "AVERAGE_POOL_2D" else "ep_max_pool_s16"
    return Step(op, [f"{kernel}(&{struct.name}, ", *_operand(op, graph, ctx, op.inputs[0]), ", ", OUT16,
                     Ref(op.outputs[0]), ");"], [struct])


def lower_mean16(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """MEAN on int16: reference_ops::QuantizedMeanOrSum as for int8, clamped to int16."""
    (inp, _), (out,) = _tensors(op, graph)
    _int16(op, graph, inp, out)
    (struct,) = lower_mean(op, _int8_view(op, graph), ctx).structs
    return Step(op, [f"ep_mean_s16(&{struct.name}, ", *_operand(op, graph, ctx, op.inputs[0]), ", ", OUT16,
                     Ref(op.outputs[0]), ");"], [struct])


# op name -> its lowering for ops with an int16 tensor; not part of the registry (`int16_lowering`)
LOWERINGS: dict[str, Lower] = {
    "CONV_2D": lower_conv16, "DEPTHWISE_CONV_2D": lower_conv16,
    "FULLY_CONNECTED": lower_fully_connected16,
    "ADD": lower_add16,
    "QUANTIZE": lower_quantize16, "DEQUANTIZE": lower_dequantize16,
    "AVERAGE_POOL_2D": lower_pool16, "MAX_POOL_2D": lower_pool16, "MEAN": lower_mean16,
}  # RESHAPE, SQUEEZE, EXPAND_DIMS: the registry's `lower_reshape` aliases int16 tensors too


def int16_lowering(op: Op, graph: Graph) -> Lower | None:
    """This module's lowering of `op` when it reads or writes an int16 tensor, else None (then the
    registry's int8 lowering runs, and refuses int16 tensors of the ops not in `LOWERINGS`)."""
    if any(index >= 0 and graph.tensors[index].dtype == "int16" for index in (*op.inputs, *op.outputs)):
        return LOWERINGS.get(op.name)
    return None
