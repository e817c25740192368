/*
 * ep_layout.c: ops that move int8 values without arithmetic (part of edgeport): RESHAPE copy
 * (when it cannot alias), TRANSPOSE, PAD / PADV2, CONCATENATION.
 */
#include <string.h>

#include "ep_fixedpoint.h"
#include "ep_kernels.h"

void ep_copy_s8(int32_t size, const int8_t *input, int8_t *output)
{
    if (input != output) {
        memmove(output, input, (size_t)size);
    }
}

void ep_transpose_s8(const ep_transpose_params *p, const int8_t *input, int8_t *output)
{
    int32_t size = 1;
    for (int32_t d = 0; d < p->dims; d++) {
        size *= p->shape[d];
    }
    for (int32_t i = 0; i < size; i++) {
        output[i] = input[ep_strided_offset(i, p->dims, p->shape, p->strides)];
    }
}

void ep_pad_s8(const ep_pad_params *p, const int8_t *input, int8_t *output)
{
    int32_t out_size = 1, rows = 1;
    int32_t out_strides[EP_MAX_DIMS];
    for (int32_t d = p->dims - 1; d >= 0; d--) {
        out_strides[d] = out_size;
        out_size *= p->out_shape[d];
    }
    for (int32_t d = 0; d + 1 < p->dims; d++) {
        rows *= p->in_shape[d];
    }
    memset(output, (int8_t)p->value, (size_t)out_size);
    /* copy each innermost row of the input to its place in the output */
    const int32_t last = p->dims - 1;
    const int32_t row = p->in_shape[last];
    for (int32_t r = 0; r < rows; r++) {
        int32_t offset = p->before[last], index = r;
        for (int32_t d = last - 1; d >= 0; d--) {
            offset += (index % p->in_shape[d] + p->before[d]) * out_strides[d];
            index /= p->in_shape[d];
        }
        memcpy(output + offset, input + r * row, (size_t)row);
    }
}

void ep_concat_s8(const ep_concat_params *p, const int8_t *const *inputs, int8_t *output)
{
    for (int32_t o = 0; o < p->outer; o++) {
        for (int32_t i = 0; i < p->count; i++) {
            memcpy(output, inputs[i] + o * p->inner[i], (size_t)p->inner[i]);
            output += p->inner[i];
        }
    }
}
