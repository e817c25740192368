"""Activation ops -> C kernel calls: PRELU, LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH (int8, as LiteRT's reference kernels compute them).

One op family of the lowerings (the shared parts are in `lowering`); the `LOWERINGS` table at
the end goes into the registry built in `lowerings`.

LEAKY_RELU, HARD_SWISH, LOGISTIC and TANH map each int8 input value to one int8 output value, so
the generator computes their 256 outputs here, with the arithmetic of LiteRT's reference kernels,
and the C library looks them up (`ep_lut_s8`):

- LOGISTIC, TANH: LiteRT's reference kernels (BUILTIN_REF) do exactly this for int8: Prepare fills
  a table with `LUTPopulate` in float32 arithmetic (`lut_populate`), calling the C library's
  tanhf / expf; so do we (`c_float_function`).
- LEAKY_RELU: reference_ops::QuantizeLeakyRelu, two MultiplyByQuantizedMultiplier.
- HARD_SWISH: reference_ops::HardSwish, gemmlowp int16 fixed point (`hard_swish_table`).

PRELU's output also depends on alpha (one per channel, typically), so `ep_prelu_s8` computes
reference_ops::BroadcastPrelu4DSlow. LiteRT's Prepare functions of these ops compute their real
multipliers in float32 (`a->params.scale * b / c` on floats), not double: `prepare_ratio`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache

import numpy as np

from edgeport.errors import InputError
from edgeport.mcu.compiler import requant
from edgeport.mcu.compiler.lowering import (
    MAX_DIMS,
    CStruct,
    Lower,
    Lowering,
    Ref,
    Step,
    _require_int8,
    _tensors,
    unsupported,
)
from edgeport.mcu.compiler.lowering_elementwise import INT8_VALUES, coalesce_dims, input_strides
from edgeport.mcu.compiler.tflite_ir import Graph, Op, Tensor

F32 = np.float32
LOGISTIC_OUTPUT_SCALE = 1.0 / 256  # LiteRT's int8 LOGISTIC refuses any other output scale
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
MAX_LEFT_SHIFT = 31  # MultiplyByQuantizedMultiplier's x * (1 << shift) is undefined beyond


# ------------------------------------------------------------------ LiteRT's Prepare arithmetic

def prepare_ratio(*factors: float, divisor: float) -> float:
    """`factors[0] * factors[1] * ... / divisor` evaluated as C++ does on floats: each step
    rounded to float32 (LiteRT's Prepare of PRELU, LEAKY_RELU, HARD_SWISH computes its real
    multipliers so, then hands them to QuantizeMultiplier as doubles)."""
    product = F32(factors[0])
    for factor in factors[1:]:
        product = F32(product * F32(factor))
    return float(F32(product / F32(divisor)))


def _multiplier(real: float, what: str) -> tuple[int, int]:
    """QuantizeMultiplier(real); ValueError if LiteRT's left shift by it would be undefined."""
    multiplier, shift = requant.quantize_multiplier(real)
    if shift > MAX_LEFT_SHIFT:
        raise ValueError(f"{what} multiplier {real:g} >= 2^{MAX_LEFT_SHIFT}")
    return multiplier, shift


@cache
def c_float_function(name: str) -> Callable[[F32], F32]:
    """The C library's float function `name` ("tanhf", "expf"): what LiteRT's std::tanh /
    std::exp on a float call when it fills its LOGISTIC / TANH tables (glibc's tanhf is not
    correctly rounded, so a NumPy or double-precision tanh would differ in the last bit now and
    then). Without a loadable C math library: the double-precision function rounded to float32."""
    for library in filter(None, (ctypes.util.find_library("m"), ctypes.util.find_library("c"))):
        try:
            function = getattr(ctypes.CDLL(library), name)
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_float], ctypes.c_float
        return lambda x: F32(function(float(x)))
    fallback = {"tanhf": np.tanh, "expf": np.exp}[name]

    def rounded(x: F32) -> F32:
        with np.errstate(over="ignore"):  # exp of a large input: inf, as expf gives
            return F32(fallback(np.float64(x)))
    return rounded


def _tanh(x: F32) -> F32:
    return c_float_function("tanhf")(x)


def _sigmoid(x: F32) -> F32:
    """LiteRT's `1.0f / (1.0f + std::exp(-value))` on a float."""
    return F32(F32(1) / F32(F32(1) + c_float_function("expf")(-x)))


def lut_populate(transform: Callable[[F32], F32], input_scale: float, input_zero_point: int, output_scale: float,
                 output_zero_point: int) -> np.ndarray:
    """TFLite's LUTPopulate for int8 (common.h, LUTPopulateInt8), in its float32 arithmetic.

    Args:
        transform: the float function (float32 in, float32 out).
        input_scale, input_zero_point, output_scale, output_zero_point: the tensors' quantization.

    Returns:
        int8 outputs for the inputs -128..127 (in that order).

    Raises:
        ValueError: an output does not fit int32 before clamping (LiteRT's float -> int32 cast
            is undefined there).
    """
    inverse_scale = F32(F32(1) / F32(output_scale))
    table = []
    for x in INT8_VALUES:
        dequantized = F32(F32(input_scale) * F32(int(x) - input_zero_point))
        rescaled = F32(requant.round_half_away(float(F32(transform(dequantized) * inverse_scale))))
        quantized = float(F32(rescaled + F32(output_zero_point)))
        if not abs(quantized) < 2.0 ** 31:
            raise ValueError(f"output scale {output_scale:g}: a table value {quantized:g} overflows int32")
        table.append(int(quantized))
    return np.clip(table, requant.INT8_MIN, requant.INT8_MAX).astype(np.int8)


def tanh_table(input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int) -> np.ndarray:
    """int8 TANH of -128..127 as LiteRT's reference kernel: LUTPopulate with std::tanh."""
    return lut_populate(_tanh, input_scale, input_zero_point, output_scale, output_zero_point)


def logistic_table(input_scale: float, input_zero_point: int, output_scale: float,
                   output_zero_point: int) -> np.ndarray:
    """int8 LOGISTIC of -128..127 as LiteRT's reference kernel: LUTPopulate with
    1 / (1 + exp(-x)). ValueError for an output scale other than 1/256 (LiteRT refuses it;
    its reference kernel takes any zero point)."""
    if float(output_scale) != LOGISTIC_OUTPUT_SCALE:
        raise ValueError(f"output scale {output_scale:g}, LiteRT requires 1/256")
    return lut_populate(_sigmoid, input_scale, input_zero_point, output_scale, output_zero_point)


def leaky_relu_table(input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int,
                     alpha: float) -> np.ndarray:
    """int8 LEAKY_RELU of -128..127 as reference_ops::QuantizeLeakyRelu: x - zero point rescaled by
    input_scale / output_scale where >= 0, else by input_scale * alpha / output_scale (a negative
    alpha's multiplier applied to |.| and negated, as LiteRT does)."""
    alpha_m, alpha_shift = _multiplier(prepare_ratio(input_scale, alpha, divisor=output_scale), "alpha")
    identity_m, identity_shift = _multiplier(prepare_ratio(input_scale, divisor=output_scale), "identity")
    value = INT8_VALUES.astype(np.int64) - input_zero_point
    identity = requant.multiply_by_quantized_multiplier(value, identity_m, identity_shift)
    scaled = requant.multiply_by_quantized_multiplier(value, abs(alpha_m), alpha_shift)
    out = np.where(value >= 0, identity, -scaled if alpha_m < 0 else scaled)
    return _clamp_int8(requant._wrap_int32(out + output_zero_point))


# ------------------------------------------------------------------ HARD_SWISH: gemmlowp int16

def _int16(x) -> np.ndarray:
    """An int stored into an int16_t (wrapping, as C++ does)."""
    return ((np.asarray(x, np.int64) - INT16_MIN) % (1 << 16)) + INT16_MIN


def _c_divide(x, divisor: int) -> np.ndarray:
    """C integer division (truncates toward zero)."""
    x = np.asarray(x, np.int64)
    return np.sign(x) * (np.abs(x) // divisor)


def _srdhm16(a, b: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int16: round(a * b / 2^15), a tie of a
    negative product toward zero; -1 * -1 saturates."""
    ab = np.asarray(a, np.int64) * b
    high = _c_divide(ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14)), 1 << 15)
    return np.where((np.asarray(a) == b) & (b == INT16_MIN), INT16_MAX, _int16(high))


def _saturating_left_shift16(x, amount: int) -> np.ndarray:
    """reference_ops::SaturatingLeftShift (hard_swish.h): x * 2^amount, saturated to int16."""
    return np.clip(np.asarray(x, np.int64) << amount, INT16_MIN, INT16_MAX)


def _downscale_to_int16(multiplier: int) -> int:
    """TFLite's DownScaleInt32ToInt16Multiplier: a Q0.31 multiplier rounded (half up) to Q0.15."""
    return INT16_MAX if multiplier >= requant.INT32_MAX - (1 << 15) else (multiplier + (1 << 15)) >> 16


def hard_swish_params(input_scale: float, output_scale: float) -> dict:
    """HardSwishPrepare (activations.cc): the output and "relu-ish" int16 multipliers and their
    exponents, from float32 scales. ValueError where LiteRT refuses (output multiplier >= 1) or
    where its int16 shifts leave what they define (a rounding shift of 16 or more, left shifts
    past 31): scales thousands of times apart."""
    hires_input_scale = float(F32(F32(1.0 / 128.0) * F32(input_scale)))
    reluish_scale = float(F32(3.0) / F32(32768.0))
    output_m, output_exponent = requant.quantize_multiplier(prepare_ratio(hires_input_scale, divisor=output_scale))
    reluish_m, reluish_exponent = requant.quantize_multiplier(prepare_ratio(hires_input_scale, divisor=reluish_scale))
    if output_exponent > 0:
        raise ValueError(f"output scale {output_scale:g} <= input scale / 128: LiteRT refuses it")
    if output_exponent <= -16 or reluish_exponent <= -16 or reluish_exponent > MAX_LEFT_SHIFT:
        raise ValueError(f"input scale {input_scale:g} and output scale {output_scale:g} are too far apart for "
                         "LiteRT's int16 arithmetic")
    return {"output_multiplier": _downscale_to_int16(output_m), "output_exponent": output_exponent,
            "reluish_multiplier": _downscale_to_int16(reluish_m), "reluish_exponent": reluish_exponent}


def hard_swish_table(input_scale: float, input_zero_point: int, output_scale: float,
                     output_zero_point: int) -> np.ndarray:
    """int8 HARD_SWISH of -128..127 as reference_ops::HardSwish (hard_swish.h), int16 fixed point:
    x on a finer scale (x 2^7), rescaled to the output scale and, separately, to a "relu-ish"
    factor in [0, 1] (saturating at x = +-3), multiplied (rounding toward zero) and shifted."""
    p = hard_swish_params(input_scale, output_scale)
    hires = (INT8_VALUES.astype(np.int64) - input_zero_point) * (1 << 7)  # |.| <= 32640: int16
    preshift_output = _srdhm16(hires, p["output_multiplier"])
    exponent = p["reluish_exponent"]
    # left shifts: all but the last bit before the multiply, that bit after (saturating there)
    reluish = _saturating_left_shift16(hires, exponent - 1) if exponent > 0 else hires
    reluish = _srdhm16(reluish, p["reluish_multiplier"])
    if exponent > 0:
        reluish = _saturating_left_shift16(reluish, 1)
    elif exponent < 0:
        reluish = requant.rounding_divide_by_pot(reluish, -exponent)
    reluish = (reluish + (1 << 15)) >> 1  # [-1, 1] -> [0, 1] in Q0.15
    output = _c_divide(reluish * preshift_output, 1 << 15)  # SaturatingDoublingHighMul: reluish >= 0
    output = requant.rounding_divide_by_pot(output, -p["output_exponent"])
    return _clamp_int8(_int16(output + output_zero_point))


def _clamp_int8(values) -> np.ndarray:
    return np.clip(values, requant.INT8_MIN, requant.INT8_MAX).astype(np.int8)


def c_table_order(table: np.ndarray) -> np.ndarray:
    """A table of the inputs -128..127 in LiteRT's order, indexed by the input byte:
    0..127, then -128..-1 (ep_lut_s8 reads lut[(uint8_t)x])."""
    return np.concatenate([table[128:], table[:128]])


# ------------------------------------------------------------------ lowerings

def _per_tensor(op: Op, graph: Graph, *tensors: Tensor) -> None:
    """int8 with one scale each (LiteRT's kernels read the per-tensor parameters only)."""
    _require_int8(op, graph, *tensors)
    for t in tensors:
        if t.per_channel:
            raise unsupported(op, graph, f"'{t.label}' quantized per channel")


def _in_place(op: Op, ctx: Lowering) -> None:
    """Let the output take the input's bytes when nothing reads them later (the elementwise
    kernels read each element before writing it)."""
    if op.outputs[0] not in ctx.outputs and ctx.last_use(op, op.inputs[0]):
        ctx.aliases[op.outputs[0]] = op.inputs[0]


def _table(op: Op, inp: Tensor, out: Tensor) -> np.ndarray:
    q = (inp.scale, inp.zero_point, out.scale, out.zero_point)
    if op.name == "LEAKY_RELU":
        return leaky_relu_table(*q, op.options.get("alpha", 0.0))
    return {"HARD_SWISH": hard_swish_table, "LOGISTIC": logistic_table, "TANH": tanh_table}[op.name](*q)


def lower_lut(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH: a 256-entry table of LiteRT's outputs, looked up."""
    (inp, *_), (out,) = _tensors(op, graph)
    _per_tensor(op, graph, inp, out)
    if inp.size != out.size:
        raise InputError(f"{graph.source}: {op.name} at {graph.node_label(op)} has {inp.size} inputs and "
                         f"{out.size} outputs")
    try:
        table = _table(op, inp, out)
    except ValueError as exc:
        raise unsupported(op, graph, str(exc)) from None
    name = ctx.array(f"op{op.index}_lut", "int8_t", c_table_order(table),
                     f"{op.name} of each int8 input (LiteRT's arithmetic), indexed by the input byte")
    _in_place(op, ctx)
    return Step(op, [f"ep_lut_s8({out.size}, {name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"])


def prelu_walk(input_shape, alpha_shape) -> tuple[list[int], list[int]] | None:
    """How ep_prelu_s8 walks alpha over the input: (shape, alpha strides), dimensions merged
    where the walk allows (a per-channel alpha: [rows, channels], strides [0, 1]); None if alpha
    does not broadcast to the input's shape (LiteRT requires the output to keep it)."""
    shape = list(input_shape) or [1]
    try:
        if list(np.broadcast_shapes(tuple(shape), tuple(alpha_shape))) != shape:
            return None
    except ValueError:
        return None
    dims, (strides,) = coalesce_dims(shape, input_strides(alpha_shape, shape))
    return dims, strides


def prelu_multipliers(input_scale: float, alpha_scale: float, output_scale: float) -> dict:
    """PreluPrepare's multipliers, float32 ratios: identity (x >= zero point), and alpha's."""
    identity = _multiplier(prepare_ratio(input_scale, divisor=output_scale), "identity")
    alpha = _multiplier(prepare_ratio(input_scale, alpha_scale, divisor=output_scale), "alpha")
    return {"identity_multiplier": identity[0], "identity_shift": identity[1],
            "alpha_multiplier": alpha[0], "alpha_shift": alpha[1]}


def lower_prelu(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """PRELU, alpha broadcast over the input as LiteRT broadcasts it."""
    (inp, alpha), (out,) = _tensors(op, graph)
    _per_tensor(op, graph, inp, alpha, out)
    walk = prelu_walk(inp.shape, alpha.shape)
    if walk is None or tuple(out.shape) != tuple(inp.shape):
        raise unsupported(op, graph, f"alpha {list(alpha.shape)} over input {list(inp.shape)} -> "
                                     f"{list(out.shape)}: LiteRT keeps the input's shape")
    dims, strides = walk
    if len(dims) > MAX_DIMS:
        raise unsupported(op, graph, f"broadcast over {len(dims)} dimensions")
    try:
        multipliers = prelu_multipliers(inp.scale, alpha.scale, out.scale)
    except ValueError as exc:
        raise unsupported(op, graph, str(exc)) from None
    name = f"op{op.index}"
    fields = {"size": out.size, "input_offset": -inp.zero_point, "alpha_offset": -alpha.zero_point,
              "output_offset": out.zero_point, **multipliers, "dims": len(dims), "shape": dims,
              "alpha_strides": strides}
    alpha_arg = ctx.operand(op.inputs[1])
    if alpha.is_constant:  # a computed alpha could share the input's bytes
        _in_place(op, ctx)
    return Step(op, [f"ep_prelu_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", alpha_arg, ", ", Ref(op.outputs[0]),
                     ");"], [CStruct("ep_prelu_params", name, fields)])


# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {
    "PRELU": lower_prelu,
    **dict.fromkeys(("LEAKY_RELU", "HARD_SWISH", "LOGISTIC", "TANH"), lower_lut),
}
