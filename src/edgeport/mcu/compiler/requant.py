"""TFLite's integer arithmetic, as pure Python/NumPy functions.

The generator computes every multiplier and shift here (once, at generation time) and writes
them into the C library as constants; the C kernels only apply them. Each function mirrors the
TFLite function of the same name in `kernels/internal/quantization_util.cc` or
`kernels/internal/common.h`, including its rounding, so the library is bit-exact with LiteRT's
reference kernels. LiteRT (ai-edge-litert 2.3) is built without TFLITE_SINGLE_ROUNDING: its
MultiplyByQuantizedMultiplier rounds twice (gemmlowp's SaturatingRoundingDoublingHighMul, then
RoundingDivideByPOT); `single_rounding=True` gives TFLite's other build variant. Its int8
FULLY_CONNECTED reference kernel does not use a fixed-point multiplier at all: it rescales in
double precision (`fc_output_scale`, `fc_rescale`). A Cortex-M4 has no double-precision FPU,
so the generator uses an exact integer form of that rescale (`fc_multiplier`,
`fc_rescale_fixed`) wherever `fc_fixed_point_mismatch` proves it gives the same bytes (all but
vanishingly rare near-tie cases), and the double rescale otherwise. tests/test_mcu_codegen.py checks these facts against LiteRT.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_half_away(x: float) -> int:
    """std::round: halfway cases away from zero (TfLiteRound). Exact: no `x + 0.5` rounding."""
    whole = math.trunc(x)
    fraction = x - whole
    return whole + (fraction >= 0.5) - (fraction <= -0.5)


def quantize_multiplier(real: float, single_rounding: bool = False) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: `real ~= multiplier * 2**(shift - 31)`, multiplier in
    [2**30, 2**31) (Q0.31), shift a signed exponent (positive = left shift).

    Args:
        real: the real multiplier, e.g. input_scale * filter_scale / output_scale.
        single_rounding: apply the TFLITE_SINGLE_ROUNDING clamp (shift <= 30).

    Returns:
        (multiplier, shift); (0, 0) for 0 and for multipliers below 2**-31 (flushed to zero).
    """
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    fixed = round_half_away(fraction * (1 << 31))  # exact: scaling by a power of two
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if single_rounding and shift > 30:
        shift, fixed = 30, (1 << 31) - 1
    return fixed, shift


def quantize_multipliers(reals, single_rounding: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_multiplier` over an array (per-channel scales): int32 multipliers and shifts."""
    pairs = [quantize_multiplier(float(r), single_rounding) for r in np.ravel(reals)]
    return (np.array([m for m, _ in pairs], dtype=np.int32), np.array([s for _, s in pairs], dtype=np.int32))


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 arrays: round(a * b / 2**31)."""
    a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    overflow = (a64 == b64) & (a64 == INT32_MIN)
    ab = a64 * b64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C division truncates to zero
    return np.where(overflow, INT32_MAX, high).astype(np.int64)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2**exponent rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _wrap_int32(x) -> np.ndarray:
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def multiply_by_quantized_multiplier(x, multiplier, shift, single_rounding: bool = False) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier(int32 x, multiplier, shift) on arrays.

    Args:
        x: int32 accumulators.
        multiplier, shift: from `quantize_multiplier` (broadcast against x).
        single_rounding: one rounding of the 64-bit product (TFLITE_SINGLE_ROUNDING) instead of
            gemmlowp's double rounding (LiteRT's build).

    Returns:
        int64 array of the int32 results.
    """
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if single_rounding:
        total_shift = 31 - shift
        return (x * multiplier + (np.int64(1) << (total_shift - 1))) >> total_shift
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(_wrap_int32(x << left), multiplier), right)


def fc_output_scale(input_scale: float, filter_scales, output_scale: float) -> np.ndarray:
    """The double-precision rescale factor of LiteRT's int8 FULLY_CONNECTED reference kernel,
    computed in its order: (double)input_scale * (double)filter_scale / (double)output_scale."""
    return float(input_scale) * np.asarray(filter_scales, dtype=np.float32).astype(np.float64) / float(output_scale)


def fc_rescale(acc, scale) -> np.ndarray:
    """round(double(acc) * scale), halves away from zero: the FULLY_CONNECTED requantization."""
    product = np.asarray(acc, dtype=np.float64) * np.asarray(scale, dtype=np.float64)
    whole = np.trunc(product)
    fraction = product - whole
    return (whole + (fraction >= 0.5) - (fraction <= -0.5)).astype(np.int64)


FC_SHIFT_RANGE = (33, 95)  # what the C kernel's two 32x32->64 multiplies handle


def fc_multiplier(scale: float) -> tuple[int, int]:
    """A double rescale factor as an exact fraction: scale == multiplier / 2**shift with a
    53-bit integer multiplier (the double's mantissa), so an integer kernel loses nothing."""
    fraction, exponent = math.frexp(float(scale))
    return int(fraction * (1 << 53)), 53 - exponent


def fc_rescale_fixed(acc, multiplier: int, shift: int) -> np.ndarray:
    """round(acc * multiplier / 2**shift), halves away from zero, computed as the C kernel does:
    |acc| times the multiplier's 32-bit halves, then one shift (33 <= shift <= 95)."""
    acc = np.asarray(acc, dtype=np.int64)
    a = np.abs(acc).astype(np.uint64)
    low = a * np.uint64(multiplier & 0xFFFFFFFF)
    high = a * np.uint64(multiplier >> 32) + (low >> np.uint64(32)) + np.uint64(1 << (shift - 33))
    r = (high >> np.uint64(shift - 32)).astype(np.int64)
    return np.where(acc < 0, -r, r)


def fc_fixed_point_mismatch(scale: float, zero_point: int, act_min: int, act_max: int, acc_min: int,
                            acc_max: int) -> int | None:
    """Where the integer-only FULLY_CONNECTED rescale (`fc_rescale_fixed` with `fc_multiplier`)
    would give a different int8 output than LiteRT's double one (`fc_rescale`).

    The integer path rounds the exact product acc * scale; LiteRT rounds the product after it
    is rounded to a double, so they can differ only next to a .5 tie. Both maps from
    accumulator to clamped output are monotone, so if they agree on both sides of every output
    step of the double map they agree on the whole range: ~2 x 255 points decide it exactly.

    Args:
        scale: the FC's double rescale factor (`fc_output_scale`), > 0.
        zero_point, act_min, act_max: output zero point and fused-activation clamp.
        acc_min, acc_max: the accumulators the layer can produce (from its weights and bias).

    Returns:
        None if they agree on every accumulator in [acc_min, acc_max], else the first one
        where they differ (acc_min if the scale is outside what the kernel handles).
    """
    multiplier, shift = fc_multiplier(scale)
    if not FC_SHIFT_RANGE[0] <= shift <= FC_SHIFT_RANGE[1] or acc_min <= INT32_MIN or acc_max > INT32_MAX:
        return acc_min

    def exact(acc):
        return np.clip(fc_rescale(acc, scale) + zero_point, act_min, act_max)

    def fixed(acc):
        return np.clip(fc_rescale_fixed(acc, multiplier, shift) + zero_point, act_min, act_max)

    levels = np.arange(act_min + 1, act_max + 1, dtype=np.int64)
    low = np.full(levels.shape, acc_min, dtype=np.int64)       # smallest acc reaching each level,
    high = np.full(levels.shape, acc_max + 1, dtype=np.int64)  # acc_max + 1 if none: binary search
    while np.any(low < high):
        mid = (low + high) // 2
        reached = exact(mid) >= levels
        searching = low < high
        high = np.where(searching & reached, mid, high)
        low = np.where(searching & ~reached, mid + 1, low)
    points = np.unique(np.concatenate([low, low - 1, [acc_min, acc_max]]))
    points = points[(points >= acc_min) & (points <= acc_max)]
    differ = exact(points) != fixed(points)
    return int(points[differ][0]) if differ.any() else None


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized: the fused activation as an int8 clamp.

    The float bounds are divided by the scale in float32, as TFLite does.
    """
    def quantize(value: float) -> int:
        return int(zero_point) + round_half_away(float(np.float32(value) / np.float32(scale)))

    bounds = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
    if activation not in bounds:
        raise ValueError(f"fused activation {activation} has no int8 clamp")
    lo, hi = bounds[activation]
    return (qmin if lo is None else max(qmin, quantize(lo)), qmax if hi is None else min(qmax, quantize(hi)))


def add_params(scale1: float, scale2: float, scale_out: float) -> dict:
    """Multipliers of TFLite's int8 ADD: inputs shifted left by 20, scaled to twice the larger
    input scale, summed, then rescaled to the output (add.cc Prepare)."""
    left_shift = 20
    twice_max = 2 * float(max(np.float32(scale1), np.float32(scale2)))
    params = {"left_shift": left_shift}
    for key, real in (("input1", float(scale1) / twice_max), ("input2", float(scale2) / twice_max),
                      ("output", twice_max / (float(1 << left_shift) * float(scale_out)))):
        multiplier, shift = quantize_multiplier(real)
        if not 0 < real < 1 or shift > 0:
            raise ValueError(f"ADD {key} multiplier {real} is outside (0, 1)")
        params[f"{key}_multiplier"], params[f"{key}_shift"] = multiplier, shift
    return params


def softmax_params(beta: float, input_scale: float, integer_bits: int = 5,
                   single_rounding: bool = False) -> tuple[int, int, int]:
    """TFLite's PreprocessSoftmaxScaling + CalculateInputRadius for the int8 reference softmax.

    Returns:
        (input_multiplier, input_left_shift, diff_min): input differences below diff_min give
        exp() = 0; others are scaled to Q5.26 by the multiplier.
    """
    max_real = float((1 << 30) - 1) if single_rounding else float((1 << 31) - 1)
    real = min(float(beta) * float(input_scale) * float(1 << (31 - integer_bits)), max_real)
    multiplier, shift = quantize_multiplier(real, single_rounding)
    if real <= 1.0 or shift < 0:
        raise ValueError(f"softmax input multiplier {real} must be greater than one")
    radius = ((1 << integer_bits) - 1) * float(1 << (31 - integer_bits)) / float(1 << shift)
    return multiplier, shift, -math.floor(radius)


def mean_params(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """Multiplier and shift of TFLite's int8 MEAN over `count` elements: the scale ratio's
    QuantizeMultiplier, then 1/count folded in as reference_ops::QuantizedMeanOrSum does."""
    multiplier, shift = quantize_multiplier(float(input_scale) / float(output_scale))
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    return int((multiplier << extra) // count), shift - extra


def dequantize(values, scale: float, zero_point: int) -> np.ndarray:
    """reference_ops::Dequantize: (q - zero_point) * scale, rounded once to float32."""
    return ((np.asarray(values, dtype=np.float64) - zero_point) * float(np.float32(scale))).astype(np.float32)
