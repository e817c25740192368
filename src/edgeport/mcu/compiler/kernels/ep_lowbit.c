/*
 * ep_lowbit.c: binary and ternary weights, and XNOR layers (part of edgeport).
 *
 * Weights (ep_lowbit_weights, written by edgeport.mcu.compiler.lowbit): each output channel's
 * -1/+1 (binary) or -1/0/+1 (ternary) weights packed along the reduction axis, 32 per word, LSB first;
 * binary: bit 1 = +1; ternary: per 32 weights the +1 mask, then the -1 mask. The int32
 * accumulators are TFLite's, acc = bias + sum (x + input_offset) * w, computed without
 * multiplying by a weight, then requantized by the dense kernels' code (ep_fc_output,
 * ep_conv_output): the outputs are LiteRT's bytes.
 *
 * int8 inputs (add/subtract): acc = bias + sum_{w=+1} v - sum_{w=-1} v, v = x + input_offset;
 * binary: 2 sum_{w=+1} v - sum v. The masked sums come from subset-sum tables: for each group of
 * 4 inputs, the 16 sums of its subsets (int16: |v| <= 255), built once per input vector (FC) or
 * output pixel (conv) and shared by every output channel; a channel then adds one table entry
 * per 4 weights, indexed by the 4 weight bits (ternary: one for the +1 and one for the -1 bits).
 * A zero weight is in neither mask: it takes no part in the sums. Scratch: 32 bytes per 4 inputs
 * (rounded up to 32 inputs).
 *
 * Binary inputs (XNOR): the input only takes the int8 values `one` (bit 1) and `other` (bit 0).
 * With A = one + input_offset, B = other + input_offset, n weights and s the weight bits,
 * sum (x + input_offset) * w = B (2 popcount(s) - n) + (A - B) popcount(s) - (A - B) popcount(b ^ s):
 * the generator folds the constant part with the bias into `row_constant` (FC) or the
 * quantization table's bias (conv); the kernel adds -(A - B) popcount(b ^ s), or for ternary
 * weights (A - B)(popcount(b & p) - popcount(b & q)). Convolution taps in the padding (TFLite
 * adds nothing for them) have b = 0 and are taken back with their mask u: binary
 * -B (2 popcount(s & u) - popcount(u)), ternary -B (popcount(p & u) - popcount(q & u)).
 *
 * Popcount: Cortex-M has no popcount instruction and GCC's __builtin_popcount is a call into
 * libgcc (__popcountsi2: the same SWAR steps, 12 instructions on Armv7-M, 18 with 3 literal loads
 * on Armv6-M, plus the call and the registers it clobbers in the loop). Here the SWAR steps are
 * inline and stop at per-byte counts (no multiply): the bytes of up to 31 words are added before
 * one horizontal sum, so a word of 32 weights costs 14 instructions on a Cortex-M4, its two loads
 * and the loop included.
 */
#include <stddef.h>
#include <string.h>

#include "ep_conv_internal.h"
#include "ep_fc_internal.h"

#define EP_GROUPS_PER_WORD 8  /* groups of 4 weights in a word */
#define EP_TABLE_SIZE 16      /* subset sums per group */
#define EP_MAX_BYTE_WORDS 31  /* words whose per-byte counts (<= 8 each) fit a byte together */

#if defined(__GNUC__) || defined(__clang__)
#define EP_LOWBIT_NOINLINE __attribute__((noinline))
#else
#define EP_LOWBIT_NOINLINE
#endif

/* ------------------------------------------------------------------ subset sums (int8 inputs) */

/* The 16 subset sums of v0..v3 into t: t[m] = sum of v_k over the bits k of m. */
EP_ALWAYS_INLINE void ep_group_sums(int32_t v0, int32_t v1, int32_t v2, int32_t v3, int16_t *t)
{
    const int32_t v01 = v0 + v1, v02 = v0 + v2, v12 = v1 + v2, v012 = v01 + v2;
    t[0] = 0;
    t[1] = (int16_t)v0;
    t[2] = (int16_t)v1;
    t[3] = (int16_t)v01;
    t[4] = (int16_t)v2;
    t[5] = (int16_t)v02;
    t[6] = (int16_t)v12;
    t[7] = (int16_t)v012;
    t[8] = (int16_t)v3;
    t[9] = (int16_t)(v0 + v3);
    t[10] = (int16_t)(v1 + v3);
    t[11] = (int16_t)(v01 + v3);
    t[12] = (int16_t)(v2 + v3);
    t[13] = (int16_t)(v02 + v3);
    t[14] = (int16_t)(v12 + v3);
    t[15] = (int16_t)(v012 + v3);
}

/* table[16 g + m] = sum of v[4 g + k] over the bits k of m, v[i] = x[i] + offset (0 for i >= n),
 * for g < groups (>= n / 4). Returns the sum of all v. */
static int32_t ep_subset_sums(const int8_t *x, int32_t n, int32_t offset, int32_t groups, int16_t *table)
{
    int32_t total = 0;
    int32_t g = 0;
    for (; g < n / 4; g++, table += EP_TABLE_SIZE) {
        const int8_t *xg = x + 4 * g;
        const int32_t v0 = xg[0] + offset, v1 = xg[1] + offset, v2 = xg[2] + offset, v3 = xg[3] + offset;
        ep_group_sums(v0, v1, v2, v3, table);
        total += v0 + v1 + v2 + v3;
    }
    for (; g < groups; g++, table += EP_TABLE_SIZE) { /* the last inputs, then zeros */
        int32_t v[4];
        for (int32_t k = 0; k < 4; k++) {
            v[k] = 4 * g + k < n ? x[4 * g + k] + offset : 0;
        }
        ep_group_sums(v[0], v[1], v[2], v[3], table);
        total += v[0] + v[1] + v[2] + v[3];
    }
    return total;
}

/* The table entry of group `group` (0..7 within a block) selected by weight bits b: the group's
 * 16 entries start 32 bytes apart, the entry is nibble `group` of b. No multiply either way:
 * Thumb-2 extracts the nibble with one UBFX and scales it in the address (4 instructions an
 * entry with the add). Armv6-M has no UBFX and LDRSH takes a register offset only: the byte
 * offset (shift, mask 0x1E, + the group's 32 bytes) is computed in a register that GCC must not
 * fold back into the base (the empty asm), which makes 5 instructions an entry instead of 7. */
#if defined(__ARM_ARCH_ISA_THUMB) && __ARM_ARCH_ISA_THUMB == 1 && defined(__GNUC__)
#define EP_ENTRY(t, b, group, acc)                                                                       \
    do {                                                                                                 \
        uint32_t offset_ = (group) ? (((b) >> (4 * (group) - 1)) & 0x1Eu) + 32u * (group)                \
                                   : (((b) << 1) & 0x1Eu);                                               \
        __asm__("" : "+l"(offset_));                                                                     \
        (acc) += *(const int16_t *)((t) + offset_);                                                      \
    } while (0)
#else
#define EP_ENTRY(t, b, group, acc) \
    ((acc) += *(const int16_t *)((t) + 2u * (((b) >> (4 * (group))) & 15u) + 32 * (group)))
#endif

/* sum over the row's blocks of the table entries its weight bits select: the sum of v where the
 * bit is set. `stride`: words from one block's mask to the next (1 binary, 2 ternary); the row
 * ends before `end`. */
EP_LOWBIT_NOINLINE static int32_t ep_masked_sum(const uint32_t *bits, const uint32_t *end, int32_t stride,
                                                const int16_t *table)
{
    const uint8_t *t = (const uint8_t *)table;
    int32_t acc = 0;
    for (; bits < end; bits += stride, t += 256) {
        const uint32_t b = *bits;
        EP_ENTRY(t, b, 0, acc);
        EP_ENTRY(t, b, 1, acc);
        EP_ENTRY(t, b, 2, acc);
        EP_ENTRY(t, b, 3, acc);
        EP_ENTRY(t, b, 4, acc);
        EP_ENTRY(t, b, 5, acc);
        EP_ENTRY(t, b, 6, acc);
        EP_ENTRY(t, b, 7, acc);
    }
    return acc;
}

/* sum (v) * w of one output channel (no bias); `total` = sum of all v. */
static inline int32_t ep_lowbit_dot(const ep_lowbit_weights *w, const uint32_t *row, const int16_t *table,
                                    int32_t total)
{
    if (w->ternary) {
        const uint32_t *end = row + 2 * w->blocks;
        return ep_masked_sum(row, end, 2, table) - ep_masked_sum(row + 1, end, 2, table);
    }
    return 2 * ep_masked_sum(row, row + w->blocks, 1, table) - total;
}

static inline int32_t ep_row_words(const ep_lowbit_weights *w)
{
    return w->ternary ? 2 * w->blocks : w->blocks;
}

void ep_fully_connected_lowbit_s8(const ep_fc_params *p, const int8_t *input, const ep_lowbit_weights *w,
                                  const int32_t *bias, const uint64_t *multiplier, const int32_t *shift,
                                  const double *scale, void *scratch, int8_t *output)
{
    int16_t *table = (int16_t *)scratch;
    const int32_t row_words = ep_row_words(w);
    for (int32_t b = 0; b < p->batches; b++) {
        const int32_t total = ep_subset_sums(input + b * p->in_depth, p->in_depth, p->input_offset,
                                             EP_GROUPS_PER_WORD * w->blocks, table);
        const uint32_t *row = w->bits;
        for (int32_t o = 0; o < p->out_depth; o++, row += row_words) {
            const int32_t acc = ep_lowbit_dot(w, row, table, total);
            *output++ = ep_fc_output(p, ep_wrapping_add(acc, bias ? bias[o] : 0), o, multiplier, shift, scale);
        }
    }
}

/* The k_h * k_w * in_c inputs of the window at (iy0, ix0) in filter order, taps in the padding
 * set to the input zero point (v = 0 there). */
static void ep_gather_patch(const ep_conv_params *p, const int8_t *batch_input, int32_t iy0, int32_t ix0,
                            int8_t *patch)
{
    const int8_t zero_point = (int8_t)-p->input_offset;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = iy0 + p->dilation_h * ky;
        for (int32_t kx = 0; kx < p->k_w; kx++, patch += p->in_c) {
            const int32_t ix = ix0 + p->dilation_w * kx;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                memset(patch, zero_point, (size_t)p->in_c);
            } else {
                memcpy(patch, batch_input + (iy * p->in_w + ix) * p->in_c, (size_t)p->in_c);
            }
        }
    }
}

void ep_conv2d_lowbit_s8(const ep_conv_params *p, const int8_t *input, const ep_lowbit_weights *w,
                         const ep_channel_quant *quant, void *scratch, int8_t *output)
{
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t row_words = ep_row_words(w);
    const int32_t pointwise = p->k_h == 1 && p->k_w == 1 && p->pad_h == 0 && p->pad_w == 0;
    const ep_output_range range = ep_output_range_of(p);
    int16_t *table = (int16_t *)scratch;
    int8_t *patch = (int8_t *)(table + EP_GROUPS_PER_WORD * EP_TABLE_SIZE * w->blocks);
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *batch_input = input + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int8_t *x = patch;
                if (pointwise) { /* the window is one pixel's channels, inside the input */
                    x = batch_input + (iy0 * p->in_w + ix0) * p->in_c;
                } else {
                    ep_gather_patch(p, batch_input, iy0, ix0, patch);
                }
                const int32_t total = ep_subset_sums(x, k, p->input_offset, EP_GROUPS_PER_WORD * w->blocks, table);
                const uint32_t *row = w->bits;
                for (int32_t oc = 0; oc < p->out_c; oc++, row += row_words) {
                    const int32_t acc = ep_lowbit_dot(w, row, table, total);
                    *output++ = ep_conv_output(acc, &quant[oc], range, p->requantize_fast);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ popcounts (binary inputs) */

/* The number of set bits of each byte of x (SWAR, no multiply). */
EP_ALWAYS_INLINE uint32_t ep_byte_counts(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (x + (x >> 4)) & 0x0F0F0F0Fu;
}

/* The sum of the four bytes of x. */
EP_ALWAYS_INLINE int32_t ep_sum_bytes(uint32_t x)
{
    x = (x & 0x00FF00FFu) + ((x >> 8) & 0x00FF00FFu);
    return (int32_t)((x & 0xFFFFu) + (x >> 16));
}

/* popcount(a[j] ^ w[j]) summed over j < blocks (binary weights). */
EP_LOWBIT_NOINLINE static int32_t ep_popcount_xor(const uint32_t *a, const uint32_t *w, int32_t blocks)
{
    int32_t count = 0;
    while (blocks > 0) { /* per-byte counts of up to 31 words fit in a byte */
        const uint32_t *end = a + (blocks < EP_MAX_BYTE_WORDS ? blocks : EP_MAX_BYTE_WORDS);
        blocks -= (int32_t)(end - a);
        uint32_t bytes = 0;
        for (; a < end; a++, w++) {
            bytes += ep_byte_counts(*a ^ *w);
        }
        count += ep_sum_bytes(bytes);
    }
    return count;
}

/* popcount(a[j] & w[j]) summed over j < blocks (binary weights: taps in the padding). */
EP_LOWBIT_NOINLINE static int32_t ep_popcount_and(const uint32_t *a, const uint32_t *w, int32_t blocks)
{
    int32_t count = 0;
    while (blocks > 0) {
        const uint32_t *end = a + (blocks < EP_MAX_BYTE_WORDS ? blocks : EP_MAX_BYTE_WORDS);
        blocks -= (int32_t)(end - a);
        uint32_t bytes = 0;
        for (; a < end; a++, w++) {
            bytes += ep_byte_counts(*a & *w);
        }
        count += ep_sum_bytes(bytes);
    }
    return count;
}

/* popcount(a[j] & w[2 j]) - popcount(a[j] & w[2 j + 1]) summed over j < blocks (ternary weights:
 * the +1 mask, then the -1 mask of each block). */
EP_LOWBIT_NOINLINE static int32_t ep_popcount_and2(const uint32_t *a, const uint32_t *w, int32_t blocks)
{
    int32_t count = 0;
    while (blocks > 0) {
        const uint32_t *end = a + (blocks < EP_MAX_BYTE_WORDS ? blocks : EP_MAX_BYTE_WORDS);
        blocks -= (int32_t)(end - a);
        uint32_t plus = 0, minus = 0;
        for (; a < end; a++, w += 2) {
            plus += ep_byte_counts(*a & w[0]);
            minus += ep_byte_counts(*a & w[1]);
        }
        count += ep_sum_bytes(plus) - ep_sum_bytes(minus);
    }
    return count;
}

/* sum (x + input_offset) * w over the taps inside the input, less the constant part: binary
 * -(A - B) popcount(b ^ s), ternary (A - B)(popcount(b & p) - popcount(b & q)); with `outside`
 * taps (u, `n_outside` of them) their share of the constant part is taken back. */
static inline int32_t ep_xnor_dot(const ep_xnor_params *q, const ep_lowbit_weights *w, const uint32_t *row,
                                  const uint32_t *bits, const uint32_t *outside, int32_t n_outside)
{
    if (w->ternary) {
        int32_t acc = q->step * ep_popcount_and2(bits, row, w->blocks);
        if (n_outside) {
            acc -= q->other_offset * ep_popcount_and2(outside, row, w->blocks);
        }
        return acc;
    }
    int32_t acc = -q->step * ep_popcount_xor(bits, row, w->blocks);
    if (n_outside) {
        acc -= q->other_offset * (2 * ep_popcount_and(outside, row, w->blocks) - n_outside);
    }
    return acc;
}

/* A bit writer: bits in order, 32 per word, LSB first. */
typedef struct {
    uint32_t *words;
    uint32_t word;
    int32_t bit;
} ep_bit_writer;

static inline void ep_put_bit(ep_bit_writer *writer, uint32_t value)
{
    writer->word |= value << writer->bit;
    if (++writer->bit == 32) {
        *writer->words++ = writer->word;
        writer->word = 0;
        writer->bit = 0;
    }
}

/* Flush the last partial word and zero the words up to `end`. */
static void ep_finish_bits(ep_bit_writer *writer, const uint32_t *end)
{
    if (writer->bit) {
        *writer->words++ = writer->word;
    }
    while (writer->words < end) {
        *writer->words++ = 0;
    }
}

/* bits of x[0..n): bit i of word i / 32 = (x[i] == one), 0 from n to 32 * blocks. Each word is
 * filled from its top bit down, with no bit counter. */
static void ep_pack_bits(const int8_t *x, int32_t n, int32_t one, uint32_t *bits, int32_t blocks)
{
    for (int32_t j = 0; j < blocks; j++) {
        const int32_t count = n - 32 * j < 32 ? (n > 32 * j ? n - 32 * j : 0) : 32;
        uint32_t word = 0;
        for (int32_t k = 0; k < count; k++) {
            word = (word >> 1) | ((uint32_t)(x[32 * j + k] == one) << 31);
        }
        bits[j] = count ? word >> (32 - count) : 0u;
    }
}

void ep_fully_connected_xnor_s8(const ep_fc_params *p, const ep_xnor_params *q, const int8_t *input,
                                const ep_lowbit_weights *w, const int32_t *row_constant, const uint64_t *multiplier,
                                const int32_t *shift, const double *scale, void *scratch, int8_t *output)
{
    uint32_t *bits = (uint32_t *)scratch;
    const int32_t row_words = ep_row_words(w);
    for (int32_t b = 0; b < p->batches; b++) {
        ep_pack_bits(input + b * p->in_depth, p->in_depth, q->one, bits, w->blocks);
        const uint32_t *row = w->bits;
        for (int32_t o = 0; o < p->out_depth; o++, row += row_words) {
            const int32_t acc = row_constant[o] + ep_xnor_dot(q, w, row, bits, NULL, 0);
            *output++ = ep_fc_output(p, acc, o, multiplier, shift, scale);
        }
    }
}

/* The window's input bits (1 where x == one) and the mask of its taps in the padding; returns
 * the number of those taps. */
static int32_t ep_gather_bits(const ep_conv_params *p, const ep_xnor_params *q, const int8_t *batch_input,
                              int32_t iy0, int32_t ix0, int32_t blocks, uint32_t *bits, uint32_t *outside)
{
    ep_bit_writer in = {bits, 0u, 0}, out = {outside, 0u, 0};
    int32_t n_outside = 0;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = iy0 + p->dilation_h * ky;
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t ix = ix0 + p->dilation_w * kx;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (int32_t c = 0; c < p->in_c; c++) {
                    ep_put_bit(&in, 0u);
                    ep_put_bit(&out, 1u);
                }
                n_outside += p->in_c;
            } else {
                const int8_t *x = batch_input + (iy * p->in_w + ix) * p->in_c;
                for (int32_t c = 0; c < p->in_c; c++) {
                    ep_put_bit(&in, x[c] == q->one);
                    ep_put_bit(&out, 0u);
                }
            }
        }
    }
    ep_finish_bits(&in, bits + blocks);
    ep_finish_bits(&out, outside + blocks);
    return n_outside;
}

void ep_conv2d_xnor_s8(const ep_conv_params *p, const ep_xnor_params *q, const int8_t *input,
                       const ep_lowbit_weights *w, const ep_channel_quant *quant, void *scratch, int8_t *output)
{
    const int32_t row_words = ep_row_words(w);
    const ep_output_range range = ep_output_range_of(p);
    uint32_t *bits = (uint32_t *)scratch;
    uint32_t *outside = bits + w->blocks;
    for (int32_t b = 0; b < p->batches; b++) {
        const int8_t *batch_input = input + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t n_outside = ep_gather_bits(p, q, batch_input, oy * p->stride_h - p->pad_h,
                                                         ox * p->stride_w - p->pad_w, w->blocks, bits, outside);
                const uint32_t *row = w->bits;
                for (int32_t oc = 0; oc < p->out_c; oc++, row += row_words) {
                    const int32_t acc = ep_xnor_dot(q, w, row, bits, outside, n_outside);
                    *output++ = ep_conv_output(acc, &quant[oc], range, p->requantize_fast);
                }
            }
        }
    }
}
