/*
 * ep_arith.h: int8 arith kernels (MUL, SUB, MAXIMUM, MINIMUM, RESIZE_NEAREST_NEIGHBOR,
 * RESIZE_BILINEAR), bit-exact with LiteRT's reference kernels.
 * Included by ep_kernels.h (after EP_MAX_DIMS and ep_add_params, which SUB takes); implemented in
 * ep_arith.c.
 *
 * The binary ops broadcast as ADD does: without broadcast, `size` elements; with broadcast, the
 * output shape (size-1 dimensions dropped and mergeable ones merged by the generator) and each
 * input's element strides over it, 0 along a broadcast dimension.
 */
#ifndef EP_ARITH_H
#define EP_ARITH_H

#include <stdint.h>

/* MUL: reference_integer_ops::Mul, (x1 + input1_offset) * (x2 + input2_offset) rescaled by
 * MultiplyByQuantizedMultiplier(output_multiplier, output_shift), + output_offset, clamped. */
typedef struct {
    int32_t size;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    int32_t broadcast, dims;
    int32_t shape[EP_MAX_DIMS], strides1[EP_MAX_DIMS], strides2[EP_MAX_DIMS];
} ep_mul_params;

/* MAXIMUM / MINIMUM: the int8 bytes compared as they are (LiteRT does not requantize). */
typedef struct {
    int32_t size;
    int32_t broadcast, dims;
    int32_t shape[EP_MAX_DIMS], strides1[EP_MAX_DIMS], strides2[EP_MAX_DIMS];
} ep_minmax_params;

/* RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR on NHWC tensors. The generator computes, as LiteRT
 * does, which input rows and columns each output row and column reads, and passes them as
 * element offsets into one batch of the input: `rows` (in_y * in_w * depth) and `cols`
 * (in_x * depth). Nearest neighbour: one offset per output row / column. Bilinear: three per
 * output row / column, the lower and upper offset and the distance past the lower one in
 * 1/1024 steps (ResizeBilinearInteger's fixed point; negative before the first pixel). */
typedef struct {
    int32_t batches, in_h, in_w, depth, out_h, out_w;
} ep_resize_params;

void ep_mul_s8(const ep_mul_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);
/* SUB: TFLite's int8 SUB, ADD's fixed-point scheme (ep_add_params) with the second input subtracted. */
void ep_sub_s8(const ep_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void ep_maximum_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void ep_minimum_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void ep_resize_nearest_s8(const ep_resize_params *p, const int32_t *rows, const int32_t *cols,
                          const int8_t *input, int8_t *output);
void ep_resize_bilinear_s8(const ep_resize_params *p, const int32_t *rows, const int32_t *cols,
                           const int8_t *input, int8_t *output);

#endif /* EP_ARITH_H */
