/*
 * ep_arith.c: MUL, SUB, MAXIMUM, MINIMUM, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, int8 (part of
 * edgeport), bit-exact with LiteRT's reference kernels (BUILTIN_REF).
 *
 * MUL: reference_integer_ops::Mul. SUB: reference_ops::Sub / BroadcastQuantSubSlow for int8, ADD's
 * scheme (inputs shifted left by 20, each rescaled, then the difference rescaled to the output).
 * MAXIMUM / MINIMUM: reference_ops::MaximumMinimumBroadcastSlow on the int8 bytes. RESIZE_NEAREST_
 * NEIGHBOR: reference_ops::ResizeNearestNeighbor, whose float index arithmetic the generator runs
 * (the kernel only copies). RESIZE_BILINEAR: reference_ops::ResizeBilinearInteger, the path LiteRT's
 * reference kernel takes for int8 (1/1024 fixed-point weights, a 2^20 sum rounded half away from
 * zero); the generator computes its source rows and columns and their weights.
 */
#include "ep_fixedpoint.h"
#include "ep_kernels.h"

/* One row of a binary op: n outputs from inputs advancing by step1 / step2 elements (0 along a
 * broadcast, else 1: the generator keeps only the innermost dimension in a row). */
typedef void (*ep_binary_row)(const void *p, const int8_t *a, int32_t step1, const int8_t *b, int32_t step2,
                              int32_t n, int8_t *output);

/* The output walked row by row (a row: the innermost dimension); each row's inputs start where
 * ADD's broadcast indexing (ep_strided_offset) puts them, so the division is per row only. */
static void ep_binary_walk(const void *p, ep_binary_row row, int32_t size, int32_t broadcast, int32_t dims,
                           const int32_t *shape, const int32_t *strides1, const int32_t *strides2,
                           const int8_t *input1, const int8_t *input2, int8_t *output)
{
    if (!broadcast) {
        row(p, input1, 1, input2, 1, size, output);
        return;
    }
    const int32_t inner = shape[dims - 1];
    for (int32_t i = 0; i < size; i += inner) {
        row(p, input1 + ep_strided_offset(i, dims, shape, strides1), strides1[dims - 1],
            input2 + ep_strided_offset(i, dims, shape, strides2), strides2[dims - 1], inner, output + i);
    }
}

/* every binary op's params carry the same broadcast fields */
#define EP_BINARY_WALK(p, row, input1, input2, output)                                                    \
    ep_binary_walk((p), (row), (p)->size, (p)->broadcast, (p)->dims, (p)->shape, (p)->strides1, (p)->strides2, \
                   (input1), (input2), (output))

static void ep_mul_row(const void *params, const int8_t *a, int32_t step1, const int8_t *b, int32_t step2,
                       int32_t n, int8_t *output)
{
    const ep_mul_params *p = (const ep_mul_params *)params;
    for (int32_t i = 0; i < n; i++, a += step1, b += step2) {
        /* |product| <= 255 * 255; the generator refused any left shift that could overflow it */
        const int32_t product = (*a + p->input1_offset) * (*b + p->input2_offset);
        output[i] = ep_requantize_acc(product, p->output_multiplier, p->output_shift, p->output_offset, p->act_min,
                                      p->act_max);
    }
}

void ep_mul_s8(const ep_mul_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    EP_BINARY_WALK(p, ep_mul_row, input1, input2, output);
}

static void ep_sub_row(const void *params, const int8_t *a, int32_t step1, const int8_t *b, int32_t step2,
                       int32_t n, int8_t *output)
{
    const ep_add_params *p = (const ep_add_params *)params;
    for (int32_t i = 0; i < n; i++, a += step1, b += step2) {
        /* each input rescaled on its own, then subtracted: negating the second multiplier instead
         * would round its ties the other way (SaturatingRoundingDoublingHighMul is not odd) */
        const int32_t scaled1 = ep_multiply_by_quantized_multiplier((*a + p->input1_offset) * (1 << p->left_shift),
                                                                    p->input1_multiplier, p->input1_shift);
        const int32_t scaled2 = ep_multiply_by_quantized_multiplier((*b + p->input2_offset) * (1 << p->left_shift),
                                                                    p->input2_multiplier, p->input2_shift);
        output[i] = ep_requantize_acc(scaled1 - scaled2, p->output_multiplier, p->output_shift, p->output_offset,
                                      p->act_min, p->act_max);
    }
}

void ep_sub_s8(const ep_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    EP_BINARY_WALK(p, ep_sub_row, input1, input2, output);
}

static void ep_maximum_row(const void *params, const int8_t *a, int32_t step1, const int8_t *b, int32_t step2,
                           int32_t n, int8_t *output)
{
    (void)params;
    for (int32_t i = 0; i < n; i++, a += step1, b += step2) {
        output[i] = *a > *b ? *a : *b;
    }
}

static void ep_minimum_row(const void *params, const int8_t *a, int32_t step1, const int8_t *b, int32_t step2,
                           int32_t n, int8_t *output)
{
    (void)params;
    for (int32_t i = 0; i < n; i++, a += step1, b += step2) {
        output[i] = *a < *b ? *a : *b;
    }
}

void ep_maximum_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    EP_BINARY_WALK(p, ep_maximum_row, input1, input2, output);
}

void ep_minimum_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    EP_BINARY_WALK(p, ep_minimum_row, input1, input2, output);
}

void ep_resize_nearest_s8(const ep_resize_params *p, const int32_t *rows, const int32_t *cols,
                          const int8_t *input, int8_t *output)
{
    const int32_t batch_size = p->in_h * p->in_w * p->depth;
    for (int32_t b = 0; b < p->batches; b++, input += batch_size) {
        for (int32_t y = 0; y < p->out_h; y++) {
            for (int32_t x = 0; x < p->out_w; x++, output += p->depth) {
                ep_copy_s8(p->depth, input + rows[y] + cols[x], output);
            }
        }
    }
}

void ep_resize_bilinear_s8(const ep_resize_params *p, const int32_t *rows, const int32_t *cols,
                           const int8_t *input, int8_t *output)
{
    const int32_t one = 1 << 10;
    const int32_t batch_size = p->in_h * p->in_w * p->depth;
    for (int32_t b = 0; b < p->batches; b++, input += batch_size) {
        for (int32_t y = 0; y < p->out_h; y++) {
            const int8_t *row0 = input + rows[3 * y], *row1 = input + rows[3 * y + 1];
            const int32_t dy = rows[3 * y + 2];
            for (int32_t x = 0; x < p->out_w; x++) {
                const int8_t *in00 = row0 + cols[3 * x], *in10 = row1 + cols[3 * x];
                const int8_t *in01 = row0 + cols[3 * x + 1], *in11 = row1 + cols[3 * x + 1];
                const int32_t dx = cols[3 * x + 2];
                /* -512 <= dy, dx < 1024: the weights' magnitudes sum to < 2^22, so with |value| <= 128
                 * the sum stays below 2^29 in int32 (LiteRT sums the same products in int64) */
                const int32_t w00 = (one - dy) * (one - dx), w10 = dy * (one - dx);
                const int32_t w01 = (one - dy) * dx, w11 = dy * dx;
                for (int32_t c = 0; c < p->depth; c++) {
                    const int32_t sum = in00[c] * w00 + in10[c] * w10 + in01[c] * w01 + in11[c] * w11;
                    /* halves away from zero; C division truncates like LiteRT's int64 one */
                    const int32_t nudge = sum > 0 ? (1 << 19) : -(1 << 19);
                    *output++ = (int8_t)((sum + nudge) / (1 << 20));
                }
            }
        }
    }
}
