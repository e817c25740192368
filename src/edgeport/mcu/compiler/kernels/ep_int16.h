/*
 * ep_int16.h: int16x8 kernels (int16 activations, int8 weights) and the conversions around them,
 * bit-exact with LiteRT's reference kernels. Included by ep_kernels.h (after its parameter
 * structs, which these kernels share); implemented in ep_int16.c.
 *
 * An int16x8 layer of a LiteRT model has int16 activations with zero point 0, int8 weights
 * (per channel for convolutions) and an int64 bias; QUANTIZE ops convert between int8 and int16
 * at its edges. Shared structs are read as documented in ep_kernels.h, except that act_min and
 * act_max clamp to int16 and the zero points of int16 tensors are 0.
 *
 * `bias` arrays hold int64 values as their two's complement bits (uint64_t); `multiplier` and
 * `shift` are TFLite's per-channel QuantizeMultiplier results. int16 tensors are 2-byte aligned.
 * No output may overlap an input.
 */
#ifndef EP_INT16_H
#define EP_INT16_H

#include <stdint.h>

/* ADD on the power-of-two path of LiteRT's int16 ADD (pot_scale_int16 and all three scales powers
 * of two): one input is the output's scale, the other is divided by 2^right_shift (rounding),
 * the two are added saturating to int16, then clamped. */
typedef struct {
    int32_t size;
    int32_t shifted_input;         /* 1 or 2: the input divided by 2^right_shift */
    int32_t right_shift;           /* 0..15 */
    int32_t act_min, act_max;
} ep_add_pot_params;

/* CONV_2D and DEPTHWISE_CONV_2D (reference_integer_ops::ConvPerChannel / DepthwiseConvPerChannel
 * on int16): acc = bias + sum input * filter in int64, MultiplyByQuantizedMultiplier(int64 acc),
 * clamped. `bias` may be NULL. The generator checked |acc| < 2^47 (LiteRT's range for it). */
void ep_conv2d_s16(const ep_conv_params *p, const int16_t *input, const int8_t *filter, const uint64_t *bias,
                   const int32_t *multiplier, const int32_t *shift, int16_t *output);
void ep_depthwise_conv2d_s16(const ep_conv_params *p, const int16_t *input, const int8_t *filter,
                             const uint64_t *bias, const int32_t *multiplier, const int32_t *shift, int16_t *output);
/* FULLY_CONNECTED (reference_integer_ops::FullyConnected / FullyConnectedPerChannel on int16):
 * acc = bias + sum input * (filter + filter_offset) in int64, rescaled as in ep_fully_connected_s8
 * (`multiplier` / `shift` where the generator proved the integer form exact, else `scale`). */
void ep_fully_connected_s16(const ep_fc_params *p, const int16_t *input, const int8_t *filter, const uint64_t *bias,
                            const uint64_t *multiplier, const int32_t *shift, const double *scale, int16_t *output);
/* ADD, the general path (left_shift 15, offsets 0), with broadcast as ep_add_s8. */
void ep_add_s16(const ep_add_params *p, const int16_t *input1, const int16_t *input2, int16_t *output);
void ep_add_pot_s16(const ep_add_pot_params *p, const int16_t *input1, const int16_t *input2, int16_t *output);
/* QUANTIZE between int8 and int16 (reference_ops::Requantize), float -> int16 (AffineQuantize);
 * DEQUANTIZE int16 -> float. */
void ep_requantize_s8_s16(const ep_requantize_params *p, const int8_t *input, int16_t *output);
void ep_requantize_s16_s8(const ep_requantize_params *p, const int16_t *input, int8_t *output);
void ep_requantize_s16(const ep_requantize_params *p, const int16_t *input, int16_t *output);
void ep_quantize_f32_s16(const ep_affine_params *p, const float *input, int16_t *output);
void ep_dequantize_s16_f32(const ep_affine_params *p, const int16_t *input, float *output);
/* AVERAGE_POOL_2D, MAX_POOL_2D and MEAN on int16, as their int8 kernels. */
void ep_average_pool_s16(const ep_pool_params *p, const int16_t *input, int16_t *output);
void ep_max_pool_s16(const ep_pool_params *p, const int16_t *input, int16_t *output);
void ep_mean_s16(const ep_mean_params *p, const int16_t *input, int16_t *output);

#endif /* EP_INT16_H */
