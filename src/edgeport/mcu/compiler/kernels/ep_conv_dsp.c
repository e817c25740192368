/*
 * ep_conv_dsp.c: CONV_2D and DEPTHWISE_CONV_2D with the DSP extension (part of edgeport).
 *
 * CONV_2D gathers two output pixels' inputs (im2col) into int16 columns with the input offset
 * added (padding taps are 0, as TFLite skips them), then computes 2 output channels x 2 pixels
 * per pass with SMLAD. DEPTHWISE_CONV_2D lists the taps of each output pixel that lie inside
 * the input, then sums them for four channels at a time with SMLABB/SMLATT. The int32 sums are
 * those of ep_conv.c's plain loops; requantization uses ep_requantize_fast where the generator
 * proved it exact (p->requantize_fast), SSAT for the int8 clamp when the activation clamps
 * nothing more, and stores four depthwise outputs with one word.
 */
#include <string.h>

#include "ep_conv_internal.h"

#ifdef EP_USE_DSP

/* How a layer requantizes: chosen once per layer, each a separately compiled block function. */
enum { EP_REQUANT_EXACT, EP_REQUANT_FAST, EP_REQUANT_FAST_FULL, EP_REQUANT_MODES };

static int32_t ep_requant_mode(const ep_conv_params *p)
{
    if (!p->requantize_fast) {
        return EP_REQUANT_EXACT;
    }
    return p->act_min == INT8_MIN && p->act_max == INT8_MAX ? EP_REQUANT_FAST_FULL : EP_REQUANT_FAST;
}

/* acc (bias included) -> int8 value as int32 in `mode` (a constant after inlining). */
EP_ALWAYS_INLINE int32_t ep_requant(int32_t acc, const ep_channel_quant *q, ep_output_range out, int32_t mode)
{
    if (mode == EP_REQUANT_EXACT) {
        return ep_requantize_acc(acc, q->multiplier, q->shift, out.offset, out.min, out.max);
    }
    const int32_t v = ep_requantize_fast(acc, q->multiplier, q->shift, q->round);
    return mode == EP_REQUANT_FAST_FULL ? __ssat(v, 8) : ep_clamp(v, out.min, out.max);
}

/* ------------------------------------------------------------------ CONV_2D */

/* Two pixels' im2col columns and what a tile needs to read them. */
typedef struct {
    const int16_t *cols; /* groups of 4 inputs, pixels alternating (8 halfwords per group) */
    const int16_t *tail; /* the K % 4 last inputs: first pixel's, then second's */
    int32_t k, groups, rem;
    int32_t channel_pairs;
    ep_output_range out;
} ep_conv_tile;

/* The K = k_h * k_w * in_c inputs of output pixel `pixel` (flat over batch, row, column) in
 * filter order: a pointer into the input for a 1x1 filter without padding, else gathered into
 * `row` with the input zero point (0 once the offset is added) for taps outside the input. */
static const int8_t *ep_conv_row(const ep_conv_params *p, const int8_t *input, int32_t pixel, int8_t *row)
{
    const int32_t ox = pixel % p->out_w;
    const int32_t oy = (pixel / p->out_w) % p->out_h;
    const int32_t b = pixel / (p->out_w * p->out_h);
    const int32_t iy0 = oy * p->stride_h - p->pad_h;
    const int32_t ix0 = ox * p->stride_w - p->pad_w;
    if (p->k_h == 1 && p->k_w == 1 && p->pad_h == 0 && p->pad_w == 0) {
        return input + ((b * p->in_h + iy0) * p->in_w + ix0) * p->in_c;
    }
    /* per filter row: the taps left of the input, the run inside it (contiguous without
     * dilation), the taps right of it */
    const int32_t pad = -p->input_offset;
    const int32_t row_bytes = p->k_w * p->in_c;
    int32_t kx0, kx1;
    ep_tap_range(ix0, p->dilation_w, p->in_w, p->k_w, &kx0, &kx1);
    int8_t *dst = row;
    for (int32_t ky = 0; ky < p->k_h; ky++, dst += row_bytes) {
        const int32_t iy = iy0 + p->dilation_h * ky;
        if (iy < 0 || iy >= p->in_h || kx0 >= kx1) {
            memset(dst, pad, (size_t)row_bytes);
            continue;
        }
        const int8_t *src = input + ((b * p->in_h + iy) * p->in_w + ix0) * p->in_c;
        memset(dst, pad, (size_t)(kx0 * p->in_c));
        if (p->dilation_w == 1) {
            memcpy(dst + kx0 * p->in_c, src + kx0 * p->in_c, (size_t)((kx1 - kx0) * p->in_c));
        } else {
            for (int32_t kx = kx0; kx < kx1; kx++) {
                memcpy(dst + kx * p->in_c, src + kx * p->dilation_w * p->in_c, (size_t)p->in_c);
            }
        }
        memset(dst + kx1 * p->in_c, pad, (size_t)((p->k_w - kx1) * p->in_c));
    }
    return row;
}

/* One pixel's column: each group of 4 inputs x0..x3 becomes the halfword pairs (x0, x2),
 * (x1, x3) + offset, the lanes SXTB16 and SXTB16(ROR 8) give of a word of 4 weights. */
static void ep_conv_column(const int8_t *src, int32_t k, int32_t input_offset, int16_t *groups, int16_t *tail)
{
    const int16x2_t offset2 = ep_pack_offset(input_offset);
    int32_t i = 0;
    for (; i + 4 <= k; i += 4) {
        const uint32_t x = ep_load4(src + i);
        ep_store4(groups, (uint32_t)__sxtab16(offset2, (int8x4_t)x));
        ep_store4(groups + 2, (uint32_t)ep_sxtab16_ror8(offset2, x));
        groups += 8;
    }
    for (; i < k; i++) {
        *tail++ = (int16_t)(src[i] + input_offset);
    }
}

/* Keeps the compiler from hoisting the loads below it (which would need more registers than the
 * loop has, and spill). */
#if defined(__GNUC__) || defined(__clang__)
#define EP_LOAD_BARRIER() __asm__ volatile("" ::: "memory")
#else
#define EP_LOAD_BARRIER() ((void)0)
#endif

/* One group of 4 inputs: lanes (0, 2) of both channels, then lanes (1, 3), so that few values
 * are live at once. */
EP_ALWAYS_INLINE void ep_mac_group2x2(const int16_t *c, const int8_t *w0, const int8_t *w1, int32_t *a00,
                                      int32_t *a01, int32_t *a10, int32_t *a11)
{
    const uint32_t w0raw = ep_load4(w0);
    const uint32_t w1raw = ep_load4(w1);
    int16x2_t x0 = (int16x2_t)ep_load4_16(c);
    int16x2_t x1 = (int16x2_t)ep_load4_16(c + 4);
    int16x2_t w = __sxtb16((int8x4_t)w0raw);
    *a00 = __smlad(w, x0, *a00);
    *a01 = __smlad(w, x1, *a01);
    w = __sxtb16((int8x4_t)w1raw);
    *a10 = __smlad(w, x0, *a10);
    *a11 = __smlad(w, x1, *a11);
    EP_LOAD_BARRIER();
    x0 = (int16x2_t)ep_load4_16(c + 2);
    x1 = (int16x2_t)ep_load4_16(c + 6);
    w = ep_sxtb16_ror8(w0raw);
    *a00 = __smlad(w, x0, *a00);
    *a01 = __smlad(w, x1, *a01);
    w = ep_sxtb16_ror8(w1raw);
    *a10 = __smlad(w, x0, *a10);
    *a11 = __smlad(w, x1, *a11);
    EP_LOAD_BARRIER();
}

/* Output channels oc, oc + 1 (weights w0, w0 + K; quant q[0], q[1]) at both pixels: 16 MACs
 * per 4 words of columns and 2 of weights, lanes (0, 2) of both channels then lanes (1, 3) so
 * that few values are live at once. */
EP_ALWAYS_INLINE void ep_conv_tile2x2(const ep_conv_tile *t, const int8_t *w0, const ep_channel_quant *q,
                                      int8_t *out0, int8_t *out1, int32_t mode)
{
    const int8_t *w1 = w0 + t->k;
    const int16_t *c = t->cols;
    int32_t a00 = q[0].bias, a01 = a00, a10 = q[1].bias, a11 = a10; /* a<channel><pixel> */
    for (int32_t n = t->groups >> 2; n > 0; n--) { /* four groups per pass: a quarter of the loop overhead */
        ep_mac_group2x2(c, w0, w1, &a00, &a01, &a10, &a11);
        ep_mac_group2x2(c + 8, w0 + 4, w1 + 4, &a00, &a01, &a10, &a11);
        ep_mac_group2x2(c + 16, w0 + 8, w1 + 8, &a00, &a01, &a10, &a11);
        ep_mac_group2x2(c + 24, w0 + 12, w1 + 12, &a00, &a01, &a10, &a11);
        c += 32;
        w0 += 16;
        w1 += 16;
    }
    if (t->groups & 2) {
        ep_mac_group2x2(c, w0, w1, &a00, &a01, &a10, &a11);
        ep_mac_group2x2(c + 8, w0 + 4, w1 + 4, &a00, &a01, &a10, &a11);
        c += 16;
        w0 += 8;
        w1 += 8;
    }
    if (t->groups & 1) {
        ep_mac_group2x2(c, w0, w1, &a00, &a01, &a10, &a11);
        w0 += 4;
        w1 += 4;
    }
    for (int32_t i = 0; i < t->rem; i++) {
        a00 += t->tail[i] * w0[i];
        a01 += t->tail[t->rem + i] * w0[i];
        a10 += t->tail[i] * w1[i];
        a11 += t->tail[t->rem + i] * w1[i];
    }
    const ep_channel_quant q0 = q[0], q1 = q[1]; /* locals: the stores below cannot change them */
    const ep_output_range out = t->out;
    out0[0] = (int8_t)ep_requant(a00, &q0, out, mode);
    out0[1] = (int8_t)ep_requant(a10, &q1, out, mode);
    out1[0] = (int8_t)ep_requant(a01, &q0, out, mode);
    out1[1] = (int8_t)ep_requant(a11, &q1, out, mode);
}

/* One block function per requantization mode; not inlined: alone, its loop keeps its values in
 * registers. */
#if defined(__GNUC__) || defined(__clang__)
#define EP_NOINLINE __attribute__((noinline))
#else
#define EP_NOINLINE
#endif

/* All channel pairs at both pixels. */
EP_ALWAYS_INLINE void ep_conv_pairs(const ep_conv_tile *t, const int8_t *filter, const ep_channel_quant *quant,
                                    int8_t *out0, int8_t *out1, int32_t mode)
{
    for (int32_t pair = t->channel_pairs; pair > 0; pair--) {
        ep_conv_tile2x2(t, filter, quant, out0, out1, mode);
        filter += 2 * t->k;
        quant += 2;
        out0 += 2;
        out1 += 2;
    }
}

typedef void (*ep_conv_tile_fn)(const ep_conv_tile *, const int8_t *, const ep_channel_quant *, int8_t *, int8_t *);

EP_NOINLINE static void ep_conv_tile_exact(const ep_conv_tile *t, const int8_t *filter,
                                           const ep_channel_quant *quant, int8_t *out0, int8_t *out1)
{
    ep_conv_pairs(t, filter, quant, out0, out1, EP_REQUANT_EXACT);
}

EP_NOINLINE static void ep_conv_tile_fast(const ep_conv_tile *t, const int8_t *filter,
                                          const ep_channel_quant *quant, int8_t *out0, int8_t *out1)
{
    ep_conv_pairs(t, filter, quant, out0, out1, EP_REQUANT_FAST);
}

EP_NOINLINE static void ep_conv_tile_fast_full(const ep_conv_tile *t, const int8_t *filter,
                                               const ep_channel_quant *quant, int8_t *out0, int8_t *out1)
{
    ep_conv_pairs(t, filter, quant, out0, out1, EP_REQUANT_FAST_FULL);
}

static const ep_conv_tile_fn ep_conv_tiles[EP_REQUANT_MODES] = {ep_conv_tile_exact, ep_conv_tile_fast,
                                                                ep_conv_tile_fast_full};

/* The last channel of an odd count, at both pixels. */
static void ep_conv_last_channel(const ep_conv_tile *t, const int8_t *w, const ep_channel_quant *q, int8_t *out0,
                                 int8_t *out1, int32_t fast)
{
    const int16_t *c = t->cols;
    int32_t a0 = 0, a1 = 0;
    for (int32_t g = 0; g < t->groups; g++, c += 8, w += 4) {
        const uint32_t raw = ep_load4(w);
        a0 = __smlad(__sxtb16((int8x4_t)raw), (int16x2_t)ep_load4_16(c), a0);
        a0 = __smlad(ep_sxtb16_ror8(raw), (int16x2_t)ep_load4_16(c + 2), a0);
        a1 = __smlad(__sxtb16((int8x4_t)raw), (int16x2_t)ep_load4_16(c + 4), a1);
        a1 = __smlad(ep_sxtb16_ror8(raw), (int16x2_t)ep_load4_16(c + 6), a1);
    }
    for (int32_t i = 0; i < t->rem; i++) {
        a0 += t->tail[i] * w[i];
        a1 += t->tail[t->rem + i] * w[i];
    }
    *out0 = ep_conv_output(a0, q, t->out, fast);
    *out1 = ep_conv_output(a1, q, t->out, fast);
}

void ep_conv2d_dsp(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                   const ep_channel_quant *quant, int8_t *scratch, int8_t *output)
{
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->batches * p->out_h * p->out_w;
    const int32_t channels = p->out_c;
    const ep_conv_tile_fn tile_fn = ep_conv_tiles[ep_requant_mode(p)];
    int16_t *cols = (int16_t *)(void *)scratch;
    int16_t *tail = cols + 8 * (k >> 2);
    int8_t *row = scratch + 4 * k;
    const ep_conv_tile tile = {cols, tail, k, k >> 2, k & 3, channels >> 1, ep_output_range_of(p)};
    int8_t discard[64]; /* an odd last pixel is computed twice: its copy, 64 channels at a time */
    for (int32_t n = 0; n < pixels; n += 2) {
        const int32_t second = n + 1 < pixels ? n + 1 : n;
        ep_conv_column(ep_conv_row(p, input, n, row), k, p->input_offset, cols, tail);
        ep_conv_column(ep_conv_row(p, input, second, row), k, p->input_offset, cols + 4, tail + (k & 3));
        int8_t *out0 = output + n * channels;
        int8_t *out1 = output + second * channels;
        const int32_t oc = channels & ~1;
        if (second != n) {
            tile_fn(&tile, filter, quant, out0, out1);
        } else { /* an odd last pixel: computed twice, its copy discarded (64 channels at a time) */
            for (int32_t c0 = 0; c0 < oc; c0 += 64) {
                ep_conv_tile part = tile;
                part.channel_pairs = (oc - c0 < 64 ? oc - c0 : 64) >> 1;
                tile_fn(&part, filter + c0 * k, quant + c0, out0 + c0, discard);
            }
        }
        if (oc < channels) {
            ep_conv_last_channel(&tile, filter + oc * k, quant + oc, out0 + oc, second != n ? out1 + oc : discard,
                                 p->requantize_fast);
        }
    }
}

/* ------------------------------------------------------------------ DEPTHWISE_CONV_2D */

/* Byte offsets of one tap in the input and in the filter, from the window's first tap. */
typedef struct {
    int32_t x, w;
} ep_tap_offset;

/* One output pixel's taps inside the input (offsets taps..end), and what a block needs to
 * requantize. */
typedef struct {
    const ep_tap_offset *taps, *end;
    int32_t blocks; /* channels / 4 */
    int16x2_t offset2;
    ep_output_range out;
} ep_depthwise_window;

/* One tap for channels c..c+3: a word of input and one of filter, four 16x16 multiply-accumulates
 * (SMLABB/SMLATT per lane). */
EP_ALWAYS_INLINE void ep_depthwise_tap4(const int8_t *x, const int8_t *w, int16x2_t offset2, int32_t *a0,
                                        int32_t *a1, int32_t *a2, int32_t *a3)
{
    const uint32_t xw = ep_load4(x);
    const uint32_t ww = ep_load4(w);
    const int16x2_t x02 = __sxtab16(offset2, (int8x4_t)xw);
    const int16x2_t w02 = __sxtb16((int8x4_t)ww);
    *a0 = __smlabb(x02, w02, *a0);
    *a2 = __smlatt(x02, w02, *a2);
    const int16x2_t x13 = ep_sxtab16_ror8(offset2, xw);
    const int16x2_t w13 = ep_sxtb16_ror8(ww);
    *a1 = __smlabb(x13, w13, *a1);
    *a3 = __smlatt(x13, w13, *a3);
    EP_LOAD_BARRIER();
}

/* Channels c..c+3 (x, w at the first tap's channel c; q = quant + c; dst = output + c): the sums
 * over the window's taps, then the four outputs stored as one word. */
EP_ALWAYS_INLINE void ep_depthwise_block4(const ep_depthwise_window *win, const int8_t *x, const int8_t *w,
                                          const ep_channel_quant *q, int8_t *dst, int32_t mode)
{
    const int16x2_t offset2 = win->offset2;
    int32_t a0 = q[0].bias, a1 = q[1].bias, a2 = q[2].bias, a3 = q[3].bias;
    const ep_tap_offset *tap = win->taps;
    /* up to 9 taps (a 3x3 window or part of it) unrolled by hand, GCC -O2 keeps such loops */
    switch (win->end - tap) {
    case 9:
        ep_depthwise_tap4(x + tap[8].x, w + tap[8].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 8:
        ep_depthwise_tap4(x + tap[7].x, w + tap[7].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 7:
        ep_depthwise_tap4(x + tap[6].x, w + tap[6].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 6:
        ep_depthwise_tap4(x + tap[5].x, w + tap[5].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 5:
        ep_depthwise_tap4(x + tap[4].x, w + tap[4].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 4:
        ep_depthwise_tap4(x + tap[3].x, w + tap[3].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 3:
        ep_depthwise_tap4(x + tap[2].x, w + tap[2].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 2:
        ep_depthwise_tap4(x + tap[1].x, w + tap[1].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 1:
        ep_depthwise_tap4(x + tap[0].x, w + tap[0].w, offset2, &a0, &a1, &a2, &a3);
        /* fall through */
    case 0:
        break;
    default:
        for (; tap < win->end; tap++) {
            ep_depthwise_tap4(x + tap->x, w + tap->w, offset2, &a0, &a1, &a2, &a3);
        }
        break;
    }
    const ep_output_range out = win->out;
    const uint32_t word = (uint32_t)(uint8_t)ep_requant(a0, &q[0], out, mode) |
                          (uint32_t)(uint8_t)ep_requant(a1, &q[1], out, mode) << 8 |
                          (uint32_t)(uint8_t)ep_requant(a2, &q[2], out, mode) << 16 |
                          (uint32_t)(uint8_t)ep_requant(a3, &q[3], out, mode) << 24;
    memcpy(dst, &word, sizeof word);
}

/* All blocks of four channels of one output pixel. */
EP_ALWAYS_INLINE void ep_depthwise_blocks4(const ep_depthwise_window *win, const int8_t *x, const int8_t *w,
                                           const ep_channel_quant *q, int8_t *dst, int32_t mode)
{
    for (int32_t n = win->blocks; n > 0; n--, x += 4, w += 4, q += 4, dst += 4) {
        ep_depthwise_block4(win, x, w, q, dst, mode);
    }
}

typedef void (*ep_depthwise_block_fn)(const ep_depthwise_window *, const int8_t *, const int8_t *,
                                      const ep_channel_quant *, int8_t *);

EP_NOINLINE static void ep_depthwise_block_exact(const ep_depthwise_window *win, const int8_t *x, const int8_t *w,
                                                 const ep_channel_quant *q, int8_t *dst)
{
    ep_depthwise_blocks4(win, x, w, q, dst, EP_REQUANT_EXACT);
}

EP_NOINLINE static void ep_depthwise_block_fast(const ep_depthwise_window *win, const int8_t *x, const int8_t *w,
                                                const ep_channel_quant *q, int8_t *dst)
{
    ep_depthwise_blocks4(win, x, w, q, dst, EP_REQUANT_FAST);
}

EP_NOINLINE static void ep_depthwise_block_fast_full(const ep_depthwise_window *win, const int8_t *x,
                                                     const int8_t *w, const ep_channel_quant *q, int8_t *dst)
{
    ep_depthwise_blocks4(win, x, w, q, dst, EP_REQUANT_FAST_FULL);
}

static const ep_depthwise_block_fn ep_depthwise_blocks[EP_REQUANT_MODES] = {
    ep_depthwise_block_exact, ep_depthwise_block_fast, ep_depthwise_block_fast_full};

void ep_depthwise_conv2d_dsp(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                             const ep_channel_quant *quant, int8_t *output)
{
    const int32_t channels = p->out_c;
    const ep_depthwise_block_fn block_fn = ep_depthwise_blocks[ep_requant_mode(p)];
    ep_tap_offset taps[EP_DEPTHWISE_MAX_TAPS];
    ep_depthwise_window win = {taps, taps, channels >> 2, ep_pack_offset(p->input_offset), ep_output_range_of(p)};
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            ep_tap_range(iy0, p->dilation_h, p->in_h, p->k_h, &ky0, &ky1);
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                ep_tap_range(ix0, p->dilation_w, p->in_w, p->k_w, &kx0, &kx1);
                ep_tap_offset *end = taps;
                for (int32_t ky = ky0; ky < ky1; ky++) {
                    for (int32_t kx = kx0; kx < kx1; kx++) {
                        end->x = ((ky - ky0) * p->dilation_h * p->in_w + (kx - kx0) * p->dilation_w) * channels;
                        end->w = ((ky - ky0) * p->k_w + kx - kx0) * channels;
                        end++;
                    }
                }
                win.end = end;
                const int8_t *x = input + ((b * p->in_h + iy0 + p->dilation_h * ky0) * p->in_w + ix0 +
                                           p->dilation_w * kx0) * channels;
                const int8_t *w = filter + (ky0 * p->k_w + kx0) * channels;
                int8_t *dst = output + ((b * p->out_h + oy) * p->out_w + ox) * channels;
                block_fn(&win, x, w, quant, dst);
                for (int32_t c = channels & ~3; c < channels; c++) {
                    int32_t acc = 0;
                    for (const ep_tap_offset *tap = taps; tap < end; tap++) {
                        acc += (x[c + tap->x] + p->input_offset) * w[c + tap->w];
                    }
                    dst[c] = ep_conv_output(acc, &quant[c], win.out, p->requantize_fast);
                }
            }
        }
    }
}

#else
typedef int ep_conv_dsp_unused; /* ISO C: a translation unit must declare something */
#endif
