/*
 * ep_activation.c: int8 activations (part of edgeport).
 *
 * Table lookup for the ops of one input value (LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH): LiteRT's
 * reference kernels run LOGISTIC and TANH on a 256-entry table filled in Prepare in float
 * arithmetic, and LEAKY_RELU and HARD_SWISH in integer arithmetic on the int8 value alone, so the
 * generator computes each table with that arithmetic and one load per element gives the same
 * bytes (and is the fastest form on a Cortex-M).
 *
 * PRELU: reference_ops::BroadcastPrelu4DSlow, with alpha broadcast over the input.
 *
 * A table per channel (ep_lut_channels_s8): float ops LiteRT runs between a DEQUANTIZE and a
 * QUANTIZE with per-channel constants (a PReLU written as RELU, MUL, SUB), computed by the
 * generator (lowering_islands).
 */
#include "ep_fixedpoint.h"
#include "ep_kernels.h"

void ep_lut_s8(int32_t size, const int8_t *lut, const int8_t *input, int8_t *output)
{
    for (int32_t i = 0; i < size; i++) {
        output[i] = lut[(uint8_t)input[i]];
    }
}

void ep_lut_channels_s8(const ep_lut_channels_params *p, const int8_t *lut, const int8_t *input, int8_t *output)
{
    for (int32_t o = 0; o < p->outer; o++) {
        const int8_t *table = lut;
        for (int32_t c = 0; c < p->channels; c++, table += 256) {
            for (int32_t i = 0; i < p->inner; i++) {
                *output++ = table[(uint8_t)*input++];
            }
        }
    }
}

static inline int8_t ep_prelu_one(const ep_prelu_params *p, int32_t x, int32_t alpha)
{
    const int32_t value = x + p->input_offset;
    int32_t out;
    if (value >= 0) {
        out = ep_multiply_by_quantized_multiplier(value, p->identity_multiplier, p->identity_shift);
    } else {
        out = ep_multiply_by_quantized_multiplier(value * (alpha + p->alpha_offset), p->alpha_multiplier,
                                                  p->alpha_shift);
    }
    /* TFLite adds the zero point in int32 before clamping (wrapping, as its builds run it) */
    return (int8_t)ep_clamp(ep_wrapping_add(out, p->output_offset), INT8_MIN, INT8_MAX);
}

void ep_prelu_s8(const ep_prelu_params *p, const int8_t *input, const int8_t *alpha, int8_t *output)
{
    const int32_t last = p->dims - 1;
    const int32_t inner = p->shape[last], step = p->alpha_strides[last];
    /* row by row (the innermost dimension): one strided offset per row, none per element */
    for (int32_t i = 0; i < p->size; i += inner) {
        const int8_t *a = alpha + ep_strided_offset(i, p->dims, p->shape, p->alpha_strides);
        for (int32_t j = 0; j < inner; j++, a += step) {
            output[i + j] = ep_prelu_one(p, input[i + j], *a);
        }
    }
}
