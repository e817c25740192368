/*
 * ep_slicing.h: int8 slicing kernels (STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, GATHER), bit-exact with
 * LiteRT's reference kernels.
 * Included by ep_kernels.h (after EP_MAX_DIMS); implemented in ep_slicing.c.
 *
 * These ops move bytes without arithmetic: LiteRT copies the int8 values as they are, whatever the
 * output's quantization. A slice that is one contiguous range of its input runs as ep_copy_s8 (or
 * shares the input's bytes); the generator computes every start, count and stride.
 */
#ifndef EP_SLICING_H
#define EP_SLICING_H

#include <stdint.h>

/* A strided window of the input: output element (i_0, ..., i_{dims-1}), in row-major order, is
 * input[start + sum_d i_d * strides[d]]. Strides may be negative or 0; every index the window
 * reaches lies inside the input. The innermost dimension is copied as one run when its stride is 1. */
typedef struct {
    int32_t dims, shape[EP_MAX_DIMS], strides[EP_MAX_DIMS];
    int32_t start;
} ep_slice_params;

/* GATHER (batch_dims 0): the input seen as [outer][axis_size][inner]; output [outer][count][inner]
 * takes row indices[i] of each outer block (0 <= indices[i] < axis_size, checked by the generator). */
typedef struct {
    int32_t outer, axis_size, count, inner;
} ep_gather_params;

void ep_slice_s8(const ep_slice_params *p, const int8_t *input, int8_t *output);
void ep_gather_s8(const ep_gather_params *p, const int8_t *input, const int32_t *indices, int8_t *output);

#endif /* EP_SLICING_H */
