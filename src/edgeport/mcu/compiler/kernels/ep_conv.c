/*
 * ep_conv.c: CONV_2D and DEPTHWISE_CONV_2D, int8 (part of edgeport).
 *
 * Arithmetic of TFLite's reference_integer_ops::ConvPerChannel and DepthwiseConvPerChannel:
 * acc = bias + sum (input + input_offset) * filter, requantized per channel in fixed point,
 * + output zero point, clamped. Taps outside the input (padding) add nothing, as in TFLite.
 *
 * This file: the plain C paths (any core, any variant) and the entry points; with the DSP
 * extension most layers take ep_conv_dsp.c's paths instead.
 */
#include <string.h>

#include "ep_conv_internal.h"

/* ep_conv_output for the plain loops, as a call: inlined, its two paths crowd the registers of
 * the dot-product loops around it. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static int8_t ep_conv_output_call(int32_t acc, const ep_channel_quant *q, const ep_conv_params *p)
{
    return ep_conv_output(acc, q, ep_output_range_of(p), p->requantize_fast);
}

/* See ep_conv_internal.h. Not inlined: alone, the dot-product loop keeps its values in registers. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
int32_t ep_conv_window_sum(const ep_conv_params *p, const int8_t *pixel_input, const int8_t *w,
                           int32_t iy0, int32_t ix0)
{
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ky++, w += p->k_w * p->filter_in_c) {
        const int32_t iy = iy0 + p->dilation_h * ky;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t ix = ix0 + p->dilation_w * kx;
            if (ix < 0 || ix >= p->in_w) {
                continue;
            }
            acc += ep_dot_s8(pixel_input + (iy * p->in_w + ix) * p->in_c, w + kx * p->filter_in_c, p->filter_in_c,
                             p->input_offset);
        }
    }
    return acc;
}

/* Any CONV_2D (groups, dilation, padding): direct loops, the taps inside the input only. */
static void ep_conv2d_direct(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                             const ep_channel_quant *quant, int8_t *output)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t out_per_group = p->out_c / groups;
    const int32_t filter_size = p->k_h * p->k_w * p->filter_in_c;
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const int8_t *group_input = input + b * p->in_h * p->in_w * p->in_c +
                                                (oc / out_per_group) * p->filter_in_c;
                    const int32_t acc = ep_conv_window_sum(p, group_input, filter + oc * filter_size, iy0, ix0);
                    *output++ = ep_conv_output_call(acc, &quant[oc], p);
                }
            }
        }
    }
}

void ep_conv2d_s8(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                  const ep_channel_quant *quant, int8_t *scratch, int8_t *output)
{
#ifdef EP_USE_DSP
    if (p->filter_in_c == p->in_c) {
        ep_conv2d_dsp(p, input, filter, quant, scratch, output);
        return;
    }
#endif
    if (input == output) { /* in place (a pointwise layer, see ep_kernels.h): each pixel's input moved aside */
        const int32_t pixels = p->batches * p->in_h * p->in_w;
        for (int32_t n = 0; n < pixels; n++) {
            memcpy(scratch, input + n * p->in_c, (size_t)p->in_c);
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                const int32_t acc = ep_dot_s8(scratch, filter + oc * p->in_c, p->in_c, p->input_offset);
                output[n * p->out_c + oc] = ep_conv_output_call(acc, &quant[oc], p);
            }
        }
        return;
    }
    ep_conv2d_direct(p, input, filter, quant, output);
}

/* Any depthwise convolution: direct loops over the taps inside the input. */
static void ep_depthwise_direct(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                                const ep_channel_quant *quant, int8_t *output)
{
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            ep_tap_range(iy0, p->dilation_h, p->in_h, p->k_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                ep_tap_range(ix0, p->dilation_w, p->in_w, p->k_w, &kx0, &kx1);
                for (int32_t oc = 0; oc < p->out_c; oc++) {
                    const int32_t ic = oc / p->depth_multiplier;
                    int32_t acc = 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int32_t iy = iy0 + p->dilation_h * ky;
                        for (int32_t kx = kx0; kx < kx1; kx++) {
                            const int32_t ix = ix0 + p->dilation_w * kx;
                            const int32_t x = input[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];
                            const int32_t w = filter[(ky * p->k_w + kx) * p->out_c + oc];
                            acc += (x + p->input_offset) * w;
                        }
                    }
                    *output++ = ep_conv_output_call(acc, &quant[oc], p);
                }
            }
        }
    }
}

void ep_depthwise_conv2d_s8(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                            const ep_channel_quant *quant, int8_t *output)
{
#ifdef EP_USE_DSP
    if (p->depth_multiplier == 1 && p->k_h * p->k_w <= EP_DEPTHWISE_MAX_TAPS) {
        ep_depthwise_conv2d_dsp(p, input, filter, quant, output);
        return;
    }
#endif
    ep_depthwise_direct(p, input, filter, quant, output);
}
