/*
 * ep_int16.c: int16x8 layers (int16 activations, int8 weights) and the conversions around them
 * (part of edgeport).
 *
 * Arithmetic of LiteRT's reference kernels for int16: the convolutions accumulate in int64 and
 * requantize with the int64 overload of MultiplyByQuantizedMultiplier (a 16-bit multiplier,
 * one rounding); FULLY_CONNECTED accumulates in int64 and rescales in double precision like its
 * int8 kernel; ADD is the int8 arithmetic with a left shift of 15 (or LiteRT's power-of-two
 * path); QUANTIZE requantizes with the int32 MultiplyByQuantizedMultiplier. A Cortex-M0 has no
 * 64-bit multiply: the compiler calls its helper once per output, not per product, since the
 * products are summed in int32 blocks that cannot overflow.
 */
#include "ep_conv_internal.h"
#include "ep_fixedpoint.h"
#include "ep_kernels.h"

/* |int16 x (int8 + filter offset)| <= 32768 * 255 < 2^23: 128 products fit an int32 sum. */
#define EP_S16_BLOCK 128

/* sum over i < n of x[i] * (w[i] + w_offset), exactly. */
static int64_t ep_dot_s16(const int16_t *x, const int8_t *w, int32_t n, int32_t w_offset)
{
    int64_t acc = 0;
    while (n > 0) {
        const int32_t block = n < EP_S16_BLOCK ? n : EP_S16_BLOCK;
        int32_t partial = 0;
        for (int32_t i = 0; i < block; i++) {
            partial += (int32_t)x[i] * ((int32_t)w[i] + w_offset);
        }
        acc += partial;
        x += block;
        w += block;
        n -= block;
    }
    return acc;
}

/* TFLite MultiplyByQuantizedMultiplier(int64_t x, ...) as LiteRT is built (common.cc): the
 * multiplier rounded to 16 bits, one rounding shift; |x| < 2^47 and shift < 8 (the generator
 * checks both), and the result is truncated to int32 as LiteRT truncates it. */
static int32_t ep_multiply_by_quantized_multiplier_64(int64_t x, int32_t multiplier, int32_t shift)
{
    const int32_t reduced = multiplier < 0x7FFF0000 ? (multiplier + (1 << 15)) >> 16 : 0x7FFF;
    const int32_t total_shift = 15 - shift;
    const int64_t result = (x * reduced + ((int64_t)1 << (total_shift - 1))) >> total_shift;
    return (int32_t)(uint32_t)(uint64_t)result;
}

/* Accumulator of output channel c (bias not added) -> int16. */
static int16_t ep_conv_output_s16(int64_t acc, const uint64_t *bias, const int32_t *multiplier, const int32_t *shift,
                                  int32_t c, const ep_conv_params *p)
{
    if (bias) {
        acc += (int64_t)bias[c];
    }
    return (int16_t)ep_clamp(ep_multiply_by_quantized_multiplier_64(acc, multiplier[c], shift[c]), p->act_min,
                             p->act_max);
}

/* Both convolutions, one output pixel at a time: per output channel, the taps inside the input,
 * each `n` products of the channel's input (its group's first channel, or its own) and weights. */
static void ep_conv_s16(const ep_conv_params *p, const int16_t *input, const int8_t *filter, const uint64_t *bias,
                        const int32_t *multiplier, const int32_t *shift, int16_t *output, int32_t depthwise)
{
    const int32_t n = depthwise ? 1 : p->filter_in_c;
    const int32_t tap_stride = depthwise ? p->out_c : p->filter_in_c;  /* filter elements between taps */
    const int32_t out_per_group = p->out_c / (p->in_c / p->filter_in_c);
    const int32_t pixels = p->out_h * p->out_w;
    for (int32_t i = 0; i < p->batches * pixels; i++) {
        const int16_t *image = input + i / pixels * p->in_h * p->in_w * p->in_c;
        const int32_t iy0 = i % pixels / p->out_w * p->stride_h - p->pad_h;
        const int32_t ix0 = i % p->out_w * p->stride_w - p->pad_w;
        int32_t ky0, ky1, kx0, kx1;
        ep_tap_range(iy0, p->dilation_h, p->in_h, p->k_h, &ky0, &ky1);
        ep_tap_range(ix0, p->dilation_w, p->in_w, p->k_w, &kx0, &kx1);
        for (int32_t oc = 0; oc < p->out_c; oc++) {
            const int16_t *x = image + (depthwise ? oc / p->depth_multiplier : oc / out_per_group * p->filter_in_c);
            const int8_t *w = filter + (depthwise ? oc : oc * p->k_h * p->k_w * p->filter_in_c);
            int64_t acc = 0;
            for (int32_t ky = ky0; ky < ky1; ky++) {
                const int32_t iy = iy0 + p->dilation_h * ky;
                for (int32_t kx = kx0; kx < kx1; kx++) {
                    acc += ep_dot_s16(x + (iy * p->in_w + ix0 + p->dilation_w * kx) * p->in_c,
                                      w + (ky * p->k_w + kx) * tap_stride, n, 0);
                }
            }
            *output++ = ep_conv_output_s16(acc, bias, multiplier, shift, oc, p);
        }
    }
}

void ep_conv2d_s16(const ep_conv_params *p, const int16_t *input, const int8_t *filter, const uint64_t *bias,
                   const int32_t *multiplier, const int32_t *shift, int16_t *output)
{
    ep_conv_s16(p, input, filter, bias, multiplier, shift, output, 0);
}

void ep_depthwise_conv2d_s16(const ep_conv_params *p, const int16_t *input, const int8_t *filter,
                             const uint64_t *bias, const int32_t *multiplier, const int32_t *shift, int16_t *output)
{
    ep_conv_s16(p, input, filter, bias, multiplier, shift, output, 1);
}

void ep_fully_connected_s16(const ep_fc_params *p, const int16_t *input, const int8_t *filter, const uint64_t *bias,
                            const uint64_t *multiplier, const int32_t *shift, const double *scale, int16_t *output)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *x = input + b * p->in_depth;
        for (int32_t o = 0; o < p->out_depth; o++) {
            int64_t acc = ep_dot_s16(x, filter + o * p->in_depth, p->in_depth, p->filter_offset);
            if (bias) {
                acc += (int64_t)bias[o];
            }
            const int32_t q = p->per_channel ? o : 0;
            int32_t value;
            if (scale) { /* LiteRT's double-precision rescale (soft-float on a Cortex-M4) */
                value = ep_round_double_to_int32((double)acc * scale[q]);
            } else {     /* proven equal to it by the generator, for accumulators within int32 */
                value = (int32_t)ep_rescale_exact((int32_t)acc, multiplier[q], shift[q]);
            }
            *output++ = (int16_t)ep_clamp(value + p->output_offset, p->act_min, p->act_max);
        }
    }
}

/* ---- ADD */

static int16_t ep_add_one_s16(const ep_add_params *p, int32_t a, int32_t b)
{
    /* (|a| + |offset|) * 2^15 < 2^31: LiteRT's choice of left shift for int16 */
    const int32_t scaled1 = ep_multiply_by_quantized_multiplier((a + p->input1_offset) * (1 << p->left_shift),
                                                                p->input1_multiplier, p->input1_shift);
    const int32_t scaled2 = ep_multiply_by_quantized_multiplier((b + p->input2_offset) * (1 << p->left_shift),
                                                                p->input2_multiplier, p->input2_shift);
    const int32_t out = ep_multiply_by_quantized_multiplier(scaled1 + scaled2, p->output_multiplier,
                                                            p->output_shift) + p->output_offset;
    return (int16_t)ep_clamp(out, p->act_min, p->act_max);
}

void ep_add_s16(const ep_add_params *p, const int16_t *input1, const int16_t *input2, int16_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        if (p->broadcast) {
            output[i] = ep_add_one_s16(p, input1[ep_strided_offset(i, p->dims, p->shape, p->strides1)],
                                       input2[ep_strided_offset(i, p->dims, p->shape, p->strides2)]);
        } else {
            output[i] = ep_add_one_s16(p, input1[i], input2[i]);
        }
    }
}

void ep_add_pot_s16(const ep_add_pot_params *p, const int16_t *input1, const int16_t *input2, int16_t *output)
{
    const int16_t *shifted = p->shifted_input == 1 ? input1 : input2;
    const int16_t *other = p->shifted_input == 1 ? input2 : input1;
    for (int32_t i = 0; i < p->size; i++) {
        /* gemmlowp RoundingDivideByPOT on int16 equals the int32 one for shifts <= 15; then
         * SaturatingAdd on int16 */
        const int32_t sum = ep_rounding_divide_by_pot(shifted[i], p->right_shift) + other[i];
        output[i] = (int16_t)ep_clamp(ep_clamp(sum, INT16_MIN, INT16_MAX), p->act_min, p->act_max);
    }
}

/* ---- QUANTIZE and DEQUANTIZE */

/* reference_ops::Requantize of one value, before its clamp to the output type. */
static inline int32_t ep_requantize_value(const ep_requantize_params *p, int32_t x)
{
    return ep_multiply_by_quantized_multiplier(x - p->input_zero_point, p->multiplier, p->shift) +
           p->output_zero_point;
}

void ep_requantize_s8_s16(const ep_requantize_params *p, const int8_t *input, int16_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        output[i] = (int16_t)ep_clamp(ep_requantize_value(p, input[i]), INT16_MIN, INT16_MAX);
    }
}

void ep_requantize_s16_s8(const ep_requantize_params *p, const int16_t *input, int8_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        output[i] = (int8_t)ep_clamp(ep_requantize_value(p, input[i]), INT8_MIN, INT8_MAX);
    }
}

void ep_requantize_s16(const ep_requantize_params *p, const int16_t *input, int16_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        output[i] = (int16_t)ep_clamp(ep_requantize_value(p, input[i]), INT16_MIN, INT16_MAX);
    }
}

void ep_quantize_f32_s16(const ep_affine_params *p, const float *input, int16_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        const int32_t q = ep_round_float_to_int32(input[i] / p->scale);  /* float division, as TFLite */
        /* q + zero point without int32 overflow at the saturated ends; |q| >= 2^17 saturates anyway */
        output[i] = (int16_t)ep_clamp(ep_clamp(q, -(1 << 17), 1 << 17) + p->zero_point, INT16_MIN, INT16_MAX);
    }
}

void ep_dequantize_s16_f32(const ep_affine_params *p, const int16_t *input, float *output)
{
    /* |q - zero point| < 2^17: the float product is the exact one rounded once, as TFLite's double
     * product cast to float */
    for (int32_t i = 0; i < p->size; i++) {
        output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    }
}

/* ---- pooling and MEAN */

/* One output of a pooling window: the window clipped to the input, its values averaged (rounded
 * half away from zero) or their maximum, clamped. */
static int16_t ep_pool_window_s16(const ep_pool_params *p, const int16_t *image, int32_t iy0, int32_t ix0,
                                  int32_t average)
{
    const int32_t fy0 = iy0 < 0 ? -iy0 : 0, fx0 = ix0 < 0 ? -ix0 : 0;
    const int32_t fy1 = p->filter_h < p->in_h - iy0 ? p->filter_h : p->in_h - iy0;
    const int32_t fx1 = p->filter_w < p->in_w - ix0 ? p->filter_w : p->in_w - ix0;
    int32_t acc = average ? 0 : INT16_MIN, count = 0;
    for (int32_t fy = fy0; fy < fy1; fy++) {
        for (int32_t fx = fx0; fx < fx1; fx++, count++) {
            const int32_t v = image[((iy0 + fy) * p->in_w + ix0 + fx) * p->channels];
            acc = average ? acc + v : (v > acc ? v : acc);
        }
    }
    if (average && count > 0) {
        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    }
    return (int16_t)ep_clamp(acc, p->act_min, p->act_max);
}

static void ep_pool_s16(const ep_pool_params *p, const int16_t *input, int16_t *output, int32_t average)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const int16_t *image = input + b * p->in_h * p->in_w * p->channels;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                for (int32_t c = 0; c < p->channels; c++) {
                    *output++ = ep_pool_window_s16(p, image + c, oy * p->stride_h - p->pad_h,
                                                   ox * p->stride_w - p->pad_w, average);
                }
            }
        }
    }
}

void ep_average_pool_s16(const ep_pool_params *p, const int16_t *input, int16_t *output)
{
    ep_pool_s16(p, input, output, 1);
}

void ep_max_pool_s16(const ep_pool_params *p, const int16_t *input, int16_t *output)
{
    ep_pool_s16(p, input, output, 0);
}

void ep_mean_s16(const ep_mean_params *p, const int16_t *input, int16_t *output)
{
    int32_t outputs = 1;
    for (int32_t d = 0; d < p->kept_dims; d++) {
        outputs *= p->kept_shape[d];
    }
    for (int32_t o = 0; o < outputs; o++) {
        const int16_t *base = input + ep_strided_offset(o, p->kept_dims, p->kept_shape, p->kept_strides);
        int32_t sum = 0;
        for (int32_t r = 0; r < p->count; r++) {
            sum += base[ep_strided_offset(r, p->reduced_dims, p->reduced_shape, p->reduced_strides)];
        }
        sum -= p->input_zero_point * p->count;
        const int32_t value = ep_multiply_by_quantized_multiplier(sum, p->multiplier, p->shift) + p->output_zero_point;
        output[o] = (int16_t)ep_clamp(value, INT16_MIN, INT16_MAX);
    }
}
