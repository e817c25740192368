/*
 * ep_activation.h: int8 activation kernels (PRELU, LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH), bit-exact with LiteRT's reference kernels.
 * Included by ep_kernels.h (after EP_MAX_DIMS); implemented in ep_activation.c.
 *
 * LEAKY_RELU, HARD_SWISH, LOGISTIC and TANH map one int8 value to one int8 value: the generator
 * computes the 256 outputs with LiteRT's own arithmetic and the kernel is a table lookup
 * (ep_lut_s8). PRELU also depends on a per-element alpha, so it computes.
 */
#ifndef EP_ACTIVATION_H
#define EP_ACTIVATION_H

#include <stdint.h>

/* PRELU int8: reference_ops::BroadcastPrelu4DSlow. The input and output are dense (same shape);
 * alpha is walked with `alpha_strides` over the output's `shape` (0 along a broadcast dimension;
 * dimensions merged where the walk allows, so a per-channel alpha is [rows, channels] with strides
 * {0, 1}). x - input zero point >= 0: MultiplyByQuantizedMultiplier(x + input_offset, identity);
 * else of (x + input_offset) * (alpha + alpha_offset), by the alpha multiplier. */
typedef struct {
    int32_t size;
    int32_t input_offset, alpha_offset, output_offset;
    int32_t identity_multiplier, identity_shift;  /* input_scale / output_scale */
    int32_t alpha_multiplier, alpha_shift;        /* input_scale * alpha_scale / output_scale */
    int32_t dims, shape[EP_MAX_DIMS], alpha_strides[EP_MAX_DIMS];
} ep_prelu_params;

/* output[i] = lut[(uint8_t)input[i]]: the table is in LiteRT's order (0..127, then -128..-1), so
 * the index is the input byte as it is. `output` may be `input`. */
void ep_lut_s8(int32_t size, const int8_t *lut, const int8_t *input, int8_t *output);
/* A table per channel: output[o][c][i] = lut[c * 256 + (uint8_t)input[o][c][i]] (tables in
 * ep_lut_s8's order). `output` may be `input`. */
typedef struct {
    int32_t outer, channels, inner;
} ep_lut_channels_params;
void ep_lut_channels_s8(const ep_lut_channels_params *p, const int8_t *lut, const int8_t *input, int8_t *output);
/* `output` may be `input` (each element is read before it is written); not `alpha`. */
void ep_prelu_s8(const ep_prelu_params *p, const int8_t *input, const int8_t *alpha, int8_t *output);

#endif /* EP_ACTIVATION_H */
