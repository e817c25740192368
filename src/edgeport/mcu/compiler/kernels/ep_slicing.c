/*
 * ep_slicing.c: int8 slicing kernels (part of edgeport): strided windows (STRIDED_SLICE, SLICE,
 * SPLIT, SPLIT_V, GATHER with evenly spaced indices) and GATHER by an index table.
 */
#include <string.h>

#include "ep_kernels.h"

void ep_slice_s8(const ep_slice_params *p, const int8_t *input, int8_t *output)
{
    const int32_t last = p->dims - 1;
    const int32_t run = p->shape[last], step = p->strides[last];
    int32_t index[EP_MAX_DIMS] = {0};
    int32_t offset = p->start;
    for (;;) {
        if (step == 1) {
            memcpy(output, input + offset, (size_t)run);
        } else {
            for (int32_t i = 0; i < run; i++) {
                output[i] = input[offset + i * step];
            }
        }
        output += run;
        /* the next row: count the outer indices up like an odometer (no division per row, which
         * a Cortex-M0 would do in software) */
        int32_t d = last - 1;
        for (; d >= 0; d--) {
            offset += p->strides[d];
            if (++index[d] < p->shape[d]) {
                break;
            }
            offset -= p->strides[d] * p->shape[d];
            index[d] = 0;
        }
        if (d < 0) {
            return;
        }
    }
}

void ep_gather_s8(const ep_gather_params *p, const int8_t *input, const int32_t *indices, int8_t *output)
{
    const int32_t block = p->axis_size * p->inner;
    for (int32_t o = 0; o < p->outer; o++) {
        for (int32_t i = 0; i < p->count; i++) {
            memcpy(output, input + o * block + indices[i] * p->inner, (size_t)p->inner);
            output += p->inner;
        }
    }
}
