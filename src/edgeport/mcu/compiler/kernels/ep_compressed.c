/*
 * ep_compressed.c: weights stored compressed in flash, decoded by the kernels (part of edgeport).
 *
 * The storage (ep_packed_weights in ep_kernels.h; written by edgeport.mcu.compiler.storage):
 * palette indices, CSR rows with relative indices and Huffman-coded streams, as in Han et al., "Deep
 * Compression" (ICLR 2016). The int8 values decoded are exactly the model's, so the int32 sums
 * (whatever their order) and the outputs are those of the dense kernels, requantized by the same
 * code (ep_conv_output, ep_fc_output).
 *
 * FULLY_CONNECTED computes from the stream: a CSR row touches its nonzero weights only; a row
 * with every weight stored is decoded into `scratch` once and reused by every batch. The
 * convolutions decode one output channel's weights at a time into `scratch` and compute that
 * channel at every output pixel with the dense inner loops (ep_dot_s8: SMLAD with the DSP
 * extension). Rows are decoded in order: a Huffman stream cannot be entered in the middle.
 * ep_weights_decode expands a whole matrix, for libraries that decode once at init.
 */
#include <stddef.h>

#include "ep_conv_internal.h"
#include "ep_fc_internal.h"

/* One symbol stream: fixed-width symbols, or canonical Huffman codes when `code` is set. */
typedef struct {
    const uint8_t *data;
    const uint8_t *code;
    uint32_t bit;   /* next bit to read */
    uint32_t width; /* fixed width, 1..8 */
} ep_reader;

/* Where decoding stands: both streams and the next row. */
typedef struct {
    ep_reader values, gaps;
    int32_t row;
} ep_cursor;

/* A fixed-width symbol, LSB first; at most 8 bits, so within two bytes. */
static inline uint32_t ep_read_fixed(ep_reader *r)
{
    const uint32_t at = r->bit >> 3, shift = r->bit & 7u;
    uint32_t v = (uint32_t)r->data[at] >> shift;
    if (shift + r->width > 8u) {
        v |= (uint32_t)r->data[at + 1u] << (8u - shift);
    }
    r->bit += r->width;
    return v & ((1u << r->width) - 1u);
}

/*
 * Canonical Huffman decoding, one bit at a time, as zlib's puff.c does it. Written by hand: it is
 * about 40 lines, and a C library dependency on an MCU would be heavier. The codebook: code[0] =
 * L, the longest code length; code[1..L] = the number of codes of each length 1..L; then the
 * symbols in code order (shorter codes first). Codes of one length are consecutive integers, the
 * first of them `first`: a code read so far is complete when code - first < count at its length.
 */
static uint32_t ep_read_huffman(ep_reader *r)
{
    const uint8_t *count = r->code + 1;
    const uint8_t *symbol = count + r->code[0];
    int32_t code = 0, first = 0, index = 0;
    for (int32_t len = 0; len < r->code[0]; len++) {
        code |= (r->data[r->bit >> 3] >> (r->bit & 7u)) & 1;
        r->bit++;
        if (code - first < count[len]) {
            return symbol[index + code - first];
        }
        index += count[len];
        first = (first + count[len]) << 1;
        code <<= 1;
    }
    return 0; /* not reached: the generator writes complete codes */
}

static inline uint32_t ep_read(ep_reader *r)
{
    return r->code ? ep_read_huffman(r) : ep_read_fixed(r);
}

/* A value symbol as an int8 value: its palette entry, or its byte in two's complement. */
static inline int32_t ep_value(const int8_t *lut, uint32_t symbol)
{
    return lut ? lut[symbol] : (int32_t)symbol - (int32_t)((symbol & 0x80u) << 1);
}

static inline int32_t ep_row_entries(const ep_packed_weights *w, int32_t row)
{
    if (w->count_bytes == 1) {
        return w->counts[row];
    }
    return w->counts[2 * row] | (int32_t)w->counts[2 * row + 1] << 8;
}

static inline const int8_t *ep_row_lut(const ep_packed_weights *w, int32_t row)
{
    return w->lut ? w->lut + row * w->lut_stride : NULL;
}

static void ep_cursor_start(const ep_packed_weights *w, ep_cursor *c)
{
    const ep_reader values = {w->values, w->value_code, 0u, (uint32_t)w->value_bits};
    const ep_reader gaps = {w->gaps, w->gap_code, 0u, (uint32_t)w->gap_bits};
    c->values = values;
    c->gaps = gaps;
    c->row = 0;
}

/* The next row's weights, dense: out[i * stride] for i < cols. */
static void ep_decode_row(const ep_packed_weights *w, ep_cursor *c, int8_t *out, int32_t stride)
{
    const int8_t *lut = ep_row_lut(w, c->row);
    if (w->counts == NULL) {
        for (int32_t i = 0; i < w->cols; i++) {
            out[i * stride] = (int8_t)ep_value(lut, ep_read(&c->values));
        }
    } else {
        for (int32_t i = 0; i < w->cols; i++) {
            out[i * stride] = 0;
        }
        int32_t at = -1;
        for (int32_t n = ep_row_entries(w, c->row); n > 0; n--) {
            at += (int32_t)ep_read(&c->gaps) + 1;
            out[at * stride] = (int8_t)ep_value(lut, ep_read(&c->values));
        }
    }
    c->row++;
}

/* sum over the next CSR row's entries of (x[i] + x_offset) * w[i]: the zeros are skipped. */
static int32_t ep_csr_row_dot(const ep_packed_weights *w, ep_cursor *c, const int8_t *x, int32_t x_offset)
{
    const int8_t *lut = ep_row_lut(w, c->row);
    int32_t acc = 0, at = -1;
    for (int32_t n = ep_row_entries(w, c->row); n > 0; n--) {
        at += (int32_t)ep_read(&c->gaps) + 1;
        acc += ((int32_t)x[at] + x_offset) * ep_value(lut, ep_read(&c->values));
    }
    c->row++;
    return acc;
}

void ep_weights_decode(const ep_packed_weights *w, int8_t *out, int32_t row_stride, int32_t col_stride)
{
    ep_cursor c;
    ep_cursor_start(w, &c);
    for (int32_t r = 0; r < w->rows; r++) {
        ep_decode_row(w, &c, out + r * row_stride, col_stride);
    }
}

void ep_fully_connected_packed_s8(const ep_fc_params *p, const int8_t *input, const ep_packed_weights *w,
                                  const int32_t *bias, const uint64_t *multiplier, const int32_t *shift,
                                  const double *scale, int8_t *scratch, int8_t *output)
{
    ep_cursor c;
    ep_cursor_start(w, &c);
    for (int32_t o = 0; o < p->out_depth; o++) {
        const ep_cursor row = c; /* each batch walks the same CSR row */
        if (w->counts == NULL) {
            ep_decode_row(w, &c, scratch, 1);
        }
        for (int32_t b = 0; b < p->batches; b++) {
            const int8_t *x = input + b * p->in_depth;
            int32_t acc;
            if (w->counts == NULL) {
                acc = ep_dot_s8(x, scratch, p->in_depth, p->input_offset);
            } else {
                c = row;
                acc = ep_csr_row_dot(w, &c, x, p->input_offset);
            }
            output[b * p->out_depth + o] = ep_fc_output(p, ep_wrapping_add(acc, bias ? bias[o] : 0), o, multiplier, shift, scale);
        }
    }
}

void ep_conv2d_packed_s8(const ep_conv_params *p, const int8_t *input, const ep_packed_weights *w,
                         const ep_channel_quant *quant, int8_t *scratch, int8_t *output)
{
    const int32_t out_per_group = p->out_c / (p->in_c / p->filter_in_c);
    const ep_output_range range = ep_output_range_of(p);
    ep_cursor c;
    ep_cursor_start(w, &c);
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        ep_decode_row(w, &c, scratch, 1); /* the channel's filter, [k_h][k_w][filter_in_c] */
        const ep_channel_quant q = quant[oc];
        int8_t *dst = output + oc;
        for (int32_t b = 0; b < p->batches; b++) {
            const int8_t *group_input = input + b * p->in_h * p->in_w * p->in_c + (oc / out_per_group) * p->filter_in_c;
            for (int32_t oy = 0; oy < p->out_h; oy++) {
                const int32_t iy0 = oy * p->stride_h - p->pad_h;
                for (int32_t ox = 0; ox < p->out_w; ox++, dst += p->out_c) {
                    const int32_t acc = ep_conv_window_sum(p, group_input, scratch, iy0, ox * p->stride_w - p->pad_w);
                    *dst = ep_conv_output(acc, &q, range, p->requantize_fast);
                }
            }
        }
    }
}

void ep_depthwise_conv2d_packed_s8(const ep_conv_params *p, const int8_t *input, const ep_packed_weights *w,
                                   const ep_channel_quant *quant, int8_t *scratch, int8_t *output)
{
    const ep_output_range range = ep_output_range_of(p);
    ep_cursor c;
    ep_cursor_start(w, &c);
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        ep_decode_row(w, &c, scratch, 1); /* the channel's taps, [k_h][k_w] */
        const ep_channel_quant q = quant[oc];
        const int8_t *channel_input = input + oc / p->depth_multiplier;
        int8_t *dst = output + oc;
        for (int32_t b = 0; b < p->batches; b++) {
            for (int32_t oy = 0; oy < p->out_h; oy++) {
                const int32_t iy0 = oy * p->stride_h - p->pad_h;
                int32_t ky0, ky1;
                ep_tap_range(iy0, p->dilation_h, p->in_h, p->k_h, &ky0, &ky1);
                for (int32_t ox = 0; ox < p->out_w; ox++, dst += p->out_c) {
                    const int32_t ix0 = ox * p->stride_w - p->pad_w;
                    int32_t kx0, kx1;
                    ep_tap_range(ix0, p->dilation_w, p->in_w, p->k_w, &kx0, &kx1);
                    int32_t acc = 0;
                    for (int32_t ky = ky0; ky < ky1; ky++) {
                        const int8_t *row = channel_input + ((b * p->in_h + iy0 + p->dilation_h * ky) * p->in_w) * p->in_c;
                        for (int32_t kx = kx0; kx < kx1; kx++) {
                            const int32_t x = row[(ix0 + p->dilation_w * kx) * p->in_c];
                            acc += (x + p->input_offset) * scratch[ky * p->k_w + kx];
                        }
                    }
                    *dst = ep_conv_output(acc, &q, range, p->requantize_fast);
                }
            }
        }
    }
}
