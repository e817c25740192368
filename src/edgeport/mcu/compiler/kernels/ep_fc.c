/*
 * ep_fc.c: FULLY_CONNECTED, int8 (part of edgeport).
 *
 * Arithmetic of TFLite's reference_integer_ops::FullyConnected: acc = bias + sum (input +
 * input_offset) * (filter + filter_offset), rescaled with LiteRT's double-precision factor
 * (done in integers where the generator proved it exact), + output zero point, clamped.
 * The generator folds input_offset * sum(filter row) into the bias when it can (and passes
 * input_offset 0); with the DSP extension four rows then share each unpacked word of input.
 */
#include "ep_dsp.h"
#include "ep_fc_internal.h"

#ifdef EP_USE_DSP
#if defined(__GNUC__) || defined(__clang__)
#define EP_FC_NOINLINE __attribute__((noinline))
#define EP_FC_LOAD_BARRIER() __asm__ volatile("" ::: "memory")
#else
#define EP_FC_NOINLINE
#define EP_FC_LOAD_BARRIER() ((void)0)
#endif

/* acc[r] = sum over i < n of x[i] * w[r * n + i], r = 0..3 (no offsets): per word of input,
 * SXTB16 twice, then per row one word of weights, SXTB16 twice and SMLAD twice. */
EP_FC_NOINLINE static void ep_fc_rows4(const int8_t *x, const int8_t *w, int32_t n, int32_t acc[4])
{
    const int8_t *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *end = x + (n & ~3);
    for (; x < end; x += 4) {
        const uint32_t xw = ep_load4(x);
        const int16x2_t x02 = __sxtb16((int8x4_t)xw);
        const int16x2_t x13 = ep_sxtb16_ror8(xw);
        uint32_t ww = ep_load4(w0);
        w0 += 4;
        a0 = __smlad(x02, __sxtb16((int8x4_t)ww), a0);
        a0 = __smlad(x13, ep_sxtb16_ror8(ww), a0);
        EP_FC_LOAD_BARRIER();
        ww = ep_load4(w1);
        w1 += 4;
        a1 = __smlad(x02, __sxtb16((int8x4_t)ww), a1);
        a1 = __smlad(x13, ep_sxtb16_ror8(ww), a1);
        EP_FC_LOAD_BARRIER();
        ww = ep_load4(w2);
        w2 += 4;
        a2 = __smlad(x02, __sxtb16((int8x4_t)ww), a2);
        a2 = __smlad(x13, ep_sxtb16_ror8(ww), a2);
        EP_FC_LOAD_BARRIER();
        ww = ep_load4(w3);
        w3 += 4;
        a3 = __smlad(x02, __sxtb16((int8x4_t)ww), a3);
        a3 = __smlad(x13, ep_sxtb16_ror8(ww), a3);
        EP_FC_LOAD_BARRIER();
    }
    for (int32_t i = 0; i < (n & 3); i++) {
        a0 += x[i] * w0[i];
        a1 += x[i] * w1[i];
        a2 += x[i] * w2[i];
        a3 += x[i] * w3[i];
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

void ep_fully_connected_s8(const ep_fc_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                           const uint64_t *multiplier, const int32_t *shift, const double *scale, int8_t *output)
{
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * p->in_depth;
        int32_t o = 0;
#ifdef EP_USE_DSP
        if (p->input_offset == 0 && p->filter_offset == 0) {
            for (; o + 4 <= p->out_depth; o += 4) {
                int32_t acc[4];
                ep_fc_rows4(x, filter + o * p->in_depth, p->in_depth, acc);
                for (int32_t r = 0; r < 4; r++) {
                    *output++ = ep_fc_output(p, ep_wrapping_add(acc[r], bias ? bias[o + r] : 0), o + r, multiplier, shift, scale);
                }
            }
        }
#endif
        for (; o < p->out_depth; o++) {
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
            *output++ = ep_fc_output(p, ep_wrapping_add(acc, bias ? bias[o] : 0), o, multiplier, shift, scale);
        }
    }
}
