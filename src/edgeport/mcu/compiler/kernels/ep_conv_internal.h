/*
 * ep_conv_internal.h: what ep_conv.c (plain C paths, entry points) and ep_conv_dsp.c (DSP
 * paths) share (internal to the edgeport kernels).
 */
#ifndef EP_CONV_INTERNAL_H
#define EP_CONV_INTERNAL_H

#include <stdint.h>

#include "ep_dsp.h"
#include "ep_fixedpoint.h"
#include "ep_kernels.h"

/* The output zero point and clamp of a layer, held in locals: stores through int8_t pointers may
 * alias anything, so fields read through `p` would be reloaded after every output. */
typedef struct {
    int32_t offset, min, max;
} ep_output_range;

static inline ep_output_range ep_output_range_of(const ep_conv_params *p)
{
    const ep_output_range r = {p->output_offset, p->act_min, p->act_max};
    return r;
}

/* acc (bias not added) -> int8 for one channel, with TFLite's arithmetic. `fast`:
 * p->requantize_fast, a constant where callers are specialized on it. */
EP_ALWAYS_INLINE int8_t ep_conv_output(int32_t acc, const ep_channel_quant *q, ep_output_range out, int32_t fast)
{
    acc = ep_wrapping_add(acc, q->bias);
    if (fast) {
        return (int8_t)ep_clamp(ep_requantize_fast(acc, q->multiplier, q->shift, q->round), out.min, out.max);
    }
    return ep_requantize_acc(acc, q->multiplier, q->shift, out.offset, out.min, out.max);
}

/* sum over the taps of one output pixel inside the input of (x + input_offset) * w, for the
 * filter `w` of one output channel ([k_h][k_w][filter_in_c]); `pixel_input` points at the input
 * of the pixel's batch, at the first input channel of the channel's group; (iy0, ix0) is the
 * window's top left corner in the input (ep_conv.c; also used by ep_compressed.c). */
int32_t ep_conv_window_sum(const ep_conv_params *p, const int8_t *pixel_input, const int8_t *w, int32_t iy0,
                           int32_t ix0);

/* First and one-past-last filter tap whose input position start + dilation * tap is in [0, size). */
static inline void ep_tap_range(int32_t start, int32_t dilation, int32_t size, int32_t taps, int32_t *first,
                                int32_t *end)
{
    int32_t t0 = 0;
    while (t0 < taps && start + dilation * t0 < 0) {
        t0++;
    }
    int32_t t1 = taps;
    while (t1 > t0 && start + dilation * (t1 - 1) >= size) {
        t1--;
    }
    *first = t0;
    *end = t1;
}

#ifdef EP_USE_DSP
#define EP_DEPTHWISE_MAX_TAPS 25 /* k_h * k_w up to 5x5 on the DSP path (a 200-byte stack table) */

/* ep_conv_dsp.c: CONV_2D without groups, DEPTHWISE_CONV_2D with depth multiplier 1 and at most
 * EP_DEPTHWISE_MAX_TAPS taps. */
void ep_conv2d_dsp(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                   const ep_channel_quant *quant, int8_t *scratch, int8_t *output);
void ep_depthwise_conv2d_dsp(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                             const ep_channel_quant *quant, int8_t *output);
#endif

#endif /* EP_CONV_INTERNAL_H */
