/*
 * ep_conv.c: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, int8 (part of edgeport).
 *
 * Arithmetic of TFLite's reference_integer_ops::ConvPerChannel, DepthwiseConvPerChannel and
 * FullyConnected: acc = sum (input + input_offset) * filter, + bias, requantized per channel
 * (convolutions: fixed point; fully connected: LiteRT's double-precision rescale, done in
 * integers where the generator proved it exact), + output zero point, clamped. Taps outside the input (padding) are skipped, as in TFLite.
 * The DSP path changes only how the int32 sums are formed, not their value.
 */
#include <string.h>

#include "ep_fixedpoint.h"
#include "ep_kernels.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define EP_USE_DSP 1
#elif defined(EP_EMULATE_DSP) /* edgeport's tests: the DSP path on a host, intrinsics in C */
#include "ep_dsp_emulation.h"
#define EP_USE_DSP 1
#endif

#ifdef EP_USE_DSP

/* 32-bit rotate right by 8 (one ROR; GCC 12's arm_acle.h has no __ror). */
static inline uint32_t ep_ror8(uint32_t x)
{
    return (x >> 8) | (x << 24);
}

static inline uint32_t ep_load4(const int8_t *p)
{
    uint32_t word;
    memcpy(&word, p, sizeof word); /* one LDR: Cortex-M4 and up allow unaligned words */
    return word;
}
#endif

/* sum over i < n of (x[i] + x_offset) * w[i]: 4 values per step with SXTAB16 + SMLAD. */
static inline int32_t ep_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset)
{
    int32_t acc = 0;
    int32_t i = 0;
#ifdef EP_USE_DSP
    /* x_offset in [-127, 128] and x in [-128, 127]: each 16-bit lane sum fits in [-255, 255] */
    const int16x2_t offset2 = (int16x2_t)(((uint32_t)(uint16_t)x_offset << 16) | (uint16_t)x_offset);
    for (; i + 4 <= n; i += 4) {
        const uint32_t xw = ep_load4(x + i);
        const uint32_t ww = ep_load4(w + i);
        const int16x2_t x02 = __sxtab16(offset2, (int8x4_t)xw);        /* bytes 0 and 2 */
        const int16x2_t x13 = __sxtab16(offset2, (int8x4_t)ep_ror8(xw)); /* bytes 1 and 3 */
        acc = __smlad(x02, __sxtb16((int8x4_t)ww), acc);
        acc = __smlad(x13, __sxtb16((int8x4_t)ep_ror8(ww)), acc);
    }
#endif
    for (; i < n; i++) {
        acc += ((int32_t)x[i] + x_offset) * (int32_t)w[i];
    }
    return acc;
}

void ep_conv2d_s8(const ep_conv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                  const int32_t *multiplier, const int32_t *shift, int8_t *output)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t out_per_group = p->out_c / groups;
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const int32_t in_c0 = (oc / out_per_group) * p->filter_in_c;
                    int32_t acc = 0;
                    for (int32_t ky = 0; ky < p->k_h; ky++) {
                        const int32_t iy = iy0 + p->dilation_h * ky;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < p->k_w; kx++) {
                            const int32_t ix = ix0 + p->dilation_w * kx;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            const int8_t *x = input + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c + in_c0;
                            const int8_t *w = filter + ((oc * p->k_h + ky) * p->k_w + kx) * p->filter_in_c;
                            acc += ep_dot_s8(x, w, p->filter_in_c, p->input_offset);
                        }
                    }
                    if (bias) {
                        acc += bias[oc];
                    }
                    const int32_t q = p->per_channel ? oc : 0;
                    *output++ = ep_requantize_acc(acc, multiplier[q], shift[q], p->output_offset, p->act_min,
                                                  p->act_max);
                }
            }
        }
    }
}

#ifdef EP_USE_DSP
/* Depthwise, depth multiplier 1, channels c..c+3 of one output pixel: one word of input and
 * one of filter per tap, four 16x16 multiply-accumulates (SMLABB/SMLATT per lane). */
static void ep_depthwise_block4(const ep_conv_params *p, const int8_t *input, const int8_t *filter, int32_t b,
                                int32_t iy0, int32_t ix0, int32_t c, int32_t acc[4])
{
    const int16x2_t offset2 =
        (int16x2_t)(((uint32_t)(uint16_t)p->input_offset << 16) | (uint16_t)p->input_offset);
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = iy0 + p->dilation_h * ky;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t ix = ix0 + p->dilation_w * kx;
            if (ix < 0 || ix >= p->in_w) {
                continue;
            }
            const uint32_t xw = ep_load4(input + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c + c);
            const uint32_t ww = ep_load4(filter + (ky * p->k_w + kx) * p->out_c + c);
            const int16x2_t x02 = __sxtab16(offset2, (int8x4_t)xw);
            const int16x2_t x13 = __sxtab16(offset2, (int8x4_t)ep_ror8(xw));
            const int16x2_t w02 = __sxtb16((int8x4_t)ww);
            const int16x2_t w13 = __sxtb16((int8x4_t)ep_ror8(ww));
            a0 = __smlabb(x02, w02, a0);
            a2 = __smlatt(x02, w02, a2);
            a1 = __smlabb(x13, w13, a1);
            a3 = __smlatt(x13, w13, a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

/* Sum for output channel oc = ic * depth_multiplier + m at one output pixel. */
static int32_t ep_depthwise_channel(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                                    int32_t b, int32_t iy0, int32_t ix0, int32_t ic, int32_t oc)
{
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = iy0 + p->dilation_h * ky;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t ix = ix0 + p->dilation_w * kx;
            if (ix < 0 || ix >= p->in_w) {
                continue;
            }
            const int32_t x = input[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];
            const int32_t w = filter[(ky * p->k_w + kx) * p->out_c + oc];
            acc += (x + p->input_offset) * w;
        }
    }
    return acc;
}

void ep_depthwise_conv2d_s8(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                            const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                            int8_t *output)
{
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int8_t *out = output + ((b * p->out_h + oy) * p->out_w + ox) * p->out_c;
                int32_t oc = 0;
#ifdef EP_USE_DSP
                if (p->depth_multiplier == 1) {
                    for (; oc + 4 <= p->out_c; oc += 4) {
                        int32_t acc[4];
                        ep_depthwise_block4(p, input, filter, b, iy0, ix0, oc, acc);
                        for (int32_t j = 0; j < 4; j++) {
                            const int32_t c = oc + j;
                            const int32_t q = p->per_channel ? c : 0;
                            out[c] = ep_requantize_acc(acc[j] + (bias ? bias[c] : 0), multiplier[q], shift[q],
                                                       p->output_offset, p->act_min, p->act_max);
                        }
                    }
                }
#endif
                for (; oc < p->out_c; oc++) {
                    int32_t acc = ep_depthwise_channel(p, input, filter, b, iy0, ix0, oc / p->depth_multiplier, oc);
                    if (bias) {
                        acc += bias[oc];
                    }
                    const int32_t q = p->per_channel ? oc : 0;
                    out[oc] = ep_requantize_acc(acc, multiplier[q], shift[q], p->output_offset, p->act_min,
                                                p->act_max);
                }
            }
        }
    }
}

void ep_fully_connected_s8(const ep_fc_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                           const uint64_t *multiplier, const int32_t *shift, const double *scale, int8_t *output)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * p->in_depth;
        for (int32_t o = 0; o < p->out_depth; o++) {
            const int8_t *w = filter + o * p->in_depth;
            int32_t acc;
            if (p->filter_offset == 0) {
                acc = ep_dot_s8(x, w, p->in_depth, p->input_offset);
            } else {
                acc = 0;
                for (int32_t i = 0; i < p->in_depth; i++) {
                    acc += ((int32_t)w[i] + p->filter_offset) * ((int32_t)x[i] + p->input_offset);
                }
            }
            if (bias) {
                acc += bias[o];
            }
            const int32_t q = p->per_channel ? o : 0;
            int64_t value;
            if (scale) { /* LiteRT's double-precision rescale (soft-float on a Cortex-M4) */
                value = (int64_t)ep_round_double_to_int32((double)acc * scale[q]) + p->output_offset;
            } else {     /* proven equal to it by the generator for every reachable acc */
                value = ep_rescale_exact(acc, multiplier[q], shift[q]) + p->output_offset;
            }
            *output++ = (int8_t)(value < p->act_min ? p->act_min : (value > p->act_max ? p->act_max : value));
        }
    }
}
