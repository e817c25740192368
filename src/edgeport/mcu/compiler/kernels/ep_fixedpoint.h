/*
 * ep_fixedpoint.h: TFLite's integer requantization and gemmlowp's fixed-point helpers, as
 * static inline C (internal to the edgeport kernels). Names follow the TFLite/gemmlowp
 * functions they reproduce. LiteRT's reference kernels are built without TFLITE_SINGLE_ROUNDING:
 * MultiplyByQuantizedMultiplier rounds twice (gemmlowp SaturatingRoundingDoublingHighMul, then
 * RoundingDivideByPOT). Its FULLY_CONNECTED reference kernel instead rescales in double
 * precision: round(acc * (double)input_scale * filter_scale / output_scale).
 */
#ifndef EP_FIXEDPOINT_H
#define EP_FIXEDPOINT_H

#include <stdint.h>

#include "ep_kernels.h"

/* a + b in int32 wrapping around like TFLite's int32 accumulator adds (two's complement, as
 * its builds run them); done unsigned to stay defined C. */
static inline int32_t ep_wrapping_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), saturating INT32_MIN^2. */
static inline int32_t ep_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent, halves away from zero (0 <= exponent <= 31). */
static inline int32_t ep_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier as LiteRT is built (without TFLITE_SINGLE_ROUNDING):
 * x * 2^max(shift, 0), times multiplier / 2^31 rounded, then divided by 2^max(-shift, 0)
 * rounded again. */
static inline int32_t ep_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    /* x * 2^left wraps like TFLite's int32 multiply; done unsigned to stay defined C */
    const int32_t shifted = (int32_t)((uint32_t)x << left);
    return ep_rounding_divide_by_pot(ep_srdhm(shifted, multiplier), right);
}

/* round(acc * multiplier / 2^shift), halves away from zero, exactly (multiplier < 2^53,
 * 33 <= shift <= 95): LiteRT's double-precision FULLY_CONNECTED rescale without doubles. The
 * multiplier is the double scale's mantissa; the generator proved this gives the same bytes
 * as LiteRT's round((double)acc * scale) for every accumulator the layer can produce. */
static inline int64_t ep_rescale_exact(int32_t acc, uint64_t multiplier, int32_t shift)
{
    const uint32_t a = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc;
    const uint64_t low = (uint64_t)a * (uint32_t)multiplier;            /* UMULL */
    const uint64_t high = (uint64_t)a * (uint32_t)(multiplier >> 32) + (low >> 32) +
                          ((uint64_t)1 << (shift - 33));                /* + half, in the high word */
    const int64_t r = (int64_t)(high >> (shift - 32));
    return acc < 0 ? -r : r;
}

/* std::round(x) for a float, as int32, saturated, without libm (and without doubles, which a
 * Cortex-M4 FPU lacks): truncation and the remainder are exact in float. */
static inline int32_t ep_round_float_to_int32(float x)
{
    if (!(x > -2147483648.0f)) {
        return x < 0.0f ? INT32_MIN : 0;  /* huge negative; NaN -> 0 */
    }
    if (x >= 2147483648.0f) {
        return INT32_MAX;
    }
    int32_t i = (int32_t)x;
    const float fraction = x - (float)i;
    if (fraction >= 0.5f) {
        i += 1;
    } else if (fraction <= -0.5f) {
        i -= 1;
    }
    return i;
}

/* std::round(x) as int32, saturated, without libm: truncation and the remainder are exact. */
static inline int32_t ep_round_double_to_int32(double x)
{
    if (!(x > -2147483648.0)) {
        return x < 0.0 ? INT32_MIN : 0;  /* huge negative; NaN -> 0 */
    }
    if (x >= 2147483647.5) {
        return INT32_MAX;
    }
    int32_t i = (int32_t)x;
    const double fraction = x - (double)i;
    if (fraction >= 0.5) {
        i += 1;
    } else if (fraction <= -0.5) {
        i -= 1;
    }
    return i;
}

/* gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent: saturating left shift. */
static inline int32_t ep_saturating_shift_left(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

static inline int32_t ep_clamp(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Accumulator -> int8: requantize, add the output zero point, clamp (fused activation). */
static inline int8_t ep_requantize_acc(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                                       int32_t act_min, int32_t act_max)
{
    acc = ep_multiply_by_quantized_multiplier(acc, multiplier, shift) + output_offset;
    return (int8_t)ep_clamp(acc, act_min, act_max);
}

/* round(a * b / 2^32), halves up: the SMMULR instruction (signed most significant word
 * multiply, rounded). */
static inline int32_t ep_smmulr(int32_t a, int32_t b)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    int32_t result;
    __asm__("smmulr %0, %1, %2" : "=r"(result) : "r"(a), "r"(b));
    return result;
#else
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

/* ep_multiply_by_quantized_multiplier(acc, multiplier, shift) + output_offset in five
 * instructions, where the generator proved it exact: shift < 0 (a right shift r = -shift,
 * r <= 22, no left shift) and |acc| < 2^29. Then SaturatingRoundingDoublingHighMul(acc, m) =
 * floor((acc * m + 2^30) / 2^31), gemmlowp's rounding for both signs, is SMMULR(2 acc, m),
 * |y| < 2^29; RoundingDivideByPOT(y, r) = floor((y + 2^(r-1) - (y < 0)) / 2^r), and adding
 * output_offset * 2^r inside the floor adds output_offset: round = 2^(r-1) + output_offset * 2^r,
 * and no sum leaves int32. */
static inline int32_t ep_requantize_fast(int32_t acc, int32_t multiplier, int32_t shift, int32_t round)
{
    const int32_t y = ep_smmulr((int32_t)((uint32_t)acc << 1), multiplier);
    return (y + round + (y >> 31)) >> -shift;
}

/* Element offset of flat index `index` in a tensor walked with per-dimension strides. */
static inline int32_t ep_strided_offset(int32_t index, int32_t dims, const int32_t *shape, const int32_t *strides)
{
    int32_t offset = 0;
    for (int32_t d = dims - 1; d >= 0; d--) {
        offset += (index % shape[d]) * strides[d];
        index /= shape[d];
    }
    return offset;
}

#endif /* EP_FIXEDPOINT_H */
