/*
 * ep_select.c: comparisons (GREATER_EQUAL, GREATER, LESS, LESS_EQUAL, EQUAL, NOT_EQUAL) of int8
 * tensors into bool tensors (one byte, 0 or 1, per element), and SELECT_V2 (part of edgeport).
 *
 * Comparisons: TFLite's ComparisonWithScaling. Each input becomes (x + offset) * 2^8 rescaled by
 * its own multiplier and shift (MultiplyByQuantizedMultiplierSmallerThanOneExp), and the two
 * int32 values are compared, so inputs of different scales compare by their real values. When
 * one input is a constant of one value (x >= 0 in a sign function), the result only depends on
 * the other input's int8 value and, the rescale being monotonic, is true on an interval of them
 * (or, for NOT_EQUAL, outside one): the generator computes that interval with TFLite's arithmetic
 * and ep_compare_range_s8 tests x in [lo, hi] (one unsigned compare).
 *
 * SELECT_V2: out = condition ? x : y, the int8 bytes as they are (LiteRT does not requantize),
 * with NumPy broadcasting of all three inputs.
 */
#include "ep_fixedpoint.h"
#include "ep_kernels.h"

/* Where the rows of up to three broadcast operands start while the output is walked row by row
 * (a row: the innermost dimension): a counter over the outer dimensions, no division. */
typedef struct {
    int32_t index[EP_MAX_DIMS];
    int32_t offset[3];
} ep_broadcast_walk;

static void ep_next_row(ep_broadcast_walk *w, int32_t dims, const int32_t *shape, const int32_t *const *strides,
                        int32_t operands)
{
    for (int32_t d = dims - 2; d >= 0; d--) {
        for (int32_t k = 0; k < operands; k++) {
            w->offset[k] += strides[k][d];
        }
        if (++w->index[d] < shape[d]) {
            return;
        }
        for (int32_t k = 0; k < operands; k++) {
            w->offset[k] -= strides[k][d] * shape[d];
        }
        w->index[d] = 0;
    }
}

static int32_t ep_compare_scaled(int32_t op, int32_t a, int32_t b)
{
    switch (op) {
    case EP_GREATER_EQUAL:
        return a >= b;
    case EP_GREATER:
        return a > b;
    case EP_LESS:
        return a < b;
    case EP_LESS_EQUAL:
        return a <= b;
    case EP_EQUAL:
        return a == b;
    default:
        return a != b;
    }
}

static inline int32_t ep_compare_one(const ep_compare_params *p, int32_t x1, int32_t x2)
{
    const int32_t a = ep_multiply_by_quantized_multiplier((x1 + p->input1_offset) * (1 << 8), p->input1_multiplier,
                                                          p->input1_shift);
    const int32_t b = ep_multiply_by_quantized_multiplier((x2 + p->input2_offset) * (1 << 8), p->input2_multiplier,
                                                          p->input2_shift);
    return ep_compare_scaled(p->op, a, b);
}

void ep_compare_s8(const ep_compare_params *p, const int8_t *input1, const int8_t *input2, uint8_t *output)
{
    if (!p->broadcast) {
        for (int32_t i = 0; i < p->size; i++) {
            output[i] = (uint8_t)ep_compare_one(p, input1[i], input2[i]);
        }
        return;
    }
    const int32_t *const strides[2] = {p->strides1, p->strides2};
    const int32_t inner = p->shape[p->dims - 1], step1 = p->strides1[p->dims - 1], step2 = p->strides2[p->dims - 1];
    ep_broadcast_walk walk = {{0}, {0, 0, 0}};
    for (int32_t i = 0; i < p->size; i += inner) {
        const int8_t *a = input1 + walk.offset[0], *b = input2 + walk.offset[1];
        for (int32_t j = 0; j < inner; j++, a += step1, b += step2) {
            *output++ = (uint8_t)ep_compare_one(p, *a, *b);
        }
        ep_next_row(&walk, p->dims, p->shape, strides, 2);
    }
}

void ep_compare_range_s8(const ep_compare_range_params *p, const int8_t *input, uint8_t *output)
{
    const int32_t lo = p->lo;
    const uint32_t width = (uint32_t)(p->hi - p->lo);
    const uint32_t invert = (uint32_t)p->invert;
    for (int32_t i = 0; i < p->size; i++) {
        output[i] = (uint8_t)(((uint32_t)(input[i] - lo) <= width) ^ invert);
    }
}

void ep_select_s8(const ep_select_params *p, const uint8_t *condition, const int8_t *x, const int8_t *y,
                  int8_t *output)
{
    if (!p->broadcast) {
        for (int32_t i = 0; i < p->size; i++) {
            output[i] = condition[i] ? x[i] : y[i];
        }
        return;
    }
    const int32_t last = p->dims - 1;
    const int32_t *const strides[3] = {p->strides_condition, p->strides_x, p->strides_y};
    const int32_t inner = p->shape[last], step_c = p->strides_condition[last];
    const int32_t step_x = p->strides_x[last], step_y = p->strides_y[last];
    ep_broadcast_walk walk = {{0}, {0, 0, 0}};
    for (int32_t i = 0; i < p->size; i += inner) {
        const uint8_t *c = condition + walk.offset[0];
        const int8_t *a = x + walk.offset[1], *b = y + walk.offset[2];
        if (step_x == 0 && step_y == 0) { /* two values along the row (a sign function's +1 / -1) */
            const int8_t va = *a, vb = *b;
            for (int32_t j = 0; j < inner; j++, c += step_c) {
                *output++ = *c ? va : vb;
            }
        } else {
            for (int32_t j = 0; j < inner; j++, c += step_c, a += step_x, b += step_y) {
                *output++ = *c ? *a : *b;
            }
        }
        ep_next_row(&walk, p->dims, p->shape, strides, 3);
    }
}
