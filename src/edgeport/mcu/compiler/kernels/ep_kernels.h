/*
 * ep_kernels.h: int8 kernels of edgeport's generated C libraries (part of edgeport, not
 * generated; the same files serve every generated library: compile them once per firmware).
 *
 * Each kernel reproduces the integer arithmetic of TFLite's reference kernels bit for bit
 * (LiteRT BUILTIN_REF). Multipliers, shifts, clamps and shapes are computed by the generator
 * and passed in const parameter structs; kernels allocate nothing and keep no state.
 * Tensors are dense, row-major, NHWC for images; weights may instead be stored compressed
 * (ep_packed_weights: palette, CSR, Huffman), read by the `_packed` kernels of ep_compressed.c,
 * or packed to 1 or 2 bits (ep_lowbit_weights: binary and ternary weights, ep_lowbit.c).
 * Requires arithmetic right shift of negative integers (every C compiler for Arm and x86 does this).
 *
 * With __ARM_FEATURE_DSP (Cortex-M4/M7/M33/M55) convolutions run on im2col columns with a
 * 2x2 SMLAD kernel, depthwise convolutions four channels at a time (SMLABB/SMLATT) and fully
 * connected layers four rows at a time (ep_conv_dsp.c, ep_fc.c); the int32 accumulators, and
 * so the outputs, are the same as the plain C path's.
 */
#ifndef EP_KERNELS_H
#define EP_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define EP_ALIGN16 __attribute__((aligned(16)))
#else
#define EP_ALIGN16 /* other compilers: align the arena by their own means for the DSP path */
#endif

#define EP_MAX_DIMS 6

/* CONV_2D and DEPTHWISE_CONV_2D. Filter layout: conv [out_c][k_h][k_w][in_c / groups],
 * depthwise [1][k_h][k_w][out_c] with out_c = in_c * depth_multiplier. */
typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;          /* top and left padding (SAME: half the total, rounded down) */
    int32_t filter_in_c;           /* conv: input channels per group; depthwise: 1 */
    int32_t depth_multiplier;      /* depthwise only */
    int32_t input_offset;          /* -(input zero point) */
    int32_t output_offset;         /* output zero point */
    int32_t act_min, act_max;      /* fused activation as an int8 clamp */
    int32_t requantize_fast;       /* 1: the generator proved ep_requantize_fast exact for every
                                    * accumulator (all shifts right, accumulators small) */
} ep_conv_params;

/* Per output channel of a convolution: its bias and TFLite's requantization (multiplier, shift:
 * MultiplyByQuantizedMultiplier); `round` serves ep_requantize_fast, which also adds the
 * output zero point. */
typedef struct {
    int32_t bias;                  /* 0 without a bias tensor */
    int32_t multiplier;            /* Q0.31 */
    int32_t shift;                 /* left if > 0, right if < 0 */
    int32_t round;                 /* right shift r = -shift >= 1: 2^(r-1) + output_offset * 2^r; else 0 */
} ep_channel_quant;

/* FULLY_CONNECTED. Filter layout [out_depth][in_depth]. LiteRT's reference kernel rescales
 * in double precision: round(acc * input_scale * filter_scale / output_scale). The generator
 * passes that factor as an exact integer fraction (multiplier / 2^shift) where it proved the
 * integer rounding gives the same bytes for every reachable accumulator, else as doubles in
 * `scale` (soft-float on a Cortex-M4); one per output channel, or one. */
typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t input_offset, filter_offset, output_offset;
    int32_t act_min, act_max;
    int32_t per_channel;
} ep_fc_params;

/* AVERAGE_POOL_2D and MAX_POOL_2D (input and output share scale and zero point). */
typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w;
    int32_t filter_h, filter_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} ep_pool_params;

/* ADD. Without broadcast, `size` elements; with broadcast, the output shape and each input's
 * element strides over it (0 along a broadcast dimension). */
typedef struct {
    int32_t size;
    int32_t input1_offset, input2_offset, output_offset, left_shift;
    int32_t input1_multiplier, input1_shift, input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    int32_t broadcast, dims;
    int32_t shape[EP_MAX_DIMS], strides1[EP_MAX_DIMS], strides2[EP_MAX_DIMS];
} ep_add_params;

/* SOFTMAX int8 -> int8 (output scale 1/256, zero point -128), gemmlowp fixed-point exp. */
typedef struct {
    int32_t outer, depth;
    int32_t input_multiplier, input_left_shift, diff_min;
} ep_softmax_params;

/* QUANTIZE float -> int8 and DEQUANTIZE int8 -> float. */
typedef struct {
    int32_t size;
    float scale;
    int32_t zero_point;
} ep_affine_params;

/* QUANTIZE int8 -> int8 (requantize). */
typedef struct {
    int32_t size, input_zero_point, output_zero_point, multiplier, shift;
} ep_requantize_params;

/* MEAN int8: kept dimensions (output order) and reduced dimensions, each with input strides. */
typedef struct {
    int32_t kept_dims, kept_shape[EP_MAX_DIMS], kept_strides[EP_MAX_DIMS];
    int32_t reduced_dims, reduced_shape[EP_MAX_DIMS], reduced_strides[EP_MAX_DIMS];
    int32_t count, input_zero_point, output_zero_point, multiplier, shift;
} ep_mean_params;

/* TRANSPOSE: output shape and, per output dimension, the input stride it walks. */
typedef struct {
    int32_t dims, shape[EP_MAX_DIMS], strides[EP_MAX_DIMS];
} ep_transpose_params;

/* PAD / PADV2: input shape, padding before each dimension, output shape, fill value. */
typedef struct {
    int32_t dims, in_shape[EP_MAX_DIMS], before[EP_MAX_DIMS], out_shape[EP_MAX_DIMS];
    int32_t value;
} ep_pad_params;

/* CONCATENATION: `outer` blocks; input i contributes inner[i] contiguous values per block. */
typedef struct {
    int32_t outer, count;
    int32_t inner[8];
} ep_concat_params;

/* A weight matrix stored compressed in flash (ep_compressed.c), one row per output channel:
 * FULLY_CONNECTED [out_depth][in_depth], CONV_2D [out_c][k_h * k_w * filter_in_c],
 * DEPTHWISE_CONV_2D [out_c][k_h * k_w] (transposed from its dense layout). The value stream holds
 * per weight (`counts` NULL) or per CSR entry a palette index into `lut` (value_bits wide; one table,
 * or lut_stride entries per row) or, without `lut`, the int8 value as a byte. CSR (Han et al.,
 * "Deep Compression"): per entry, the zeros before it as a gap_bits-wide relative index (longer
 * runs of zeros hold filler entries of value 0); `counts` gives each row's entries, count_bytes
 * each, little-endian. A stream with a codebook (`value_code`, `gap_code`) is canonical-Huffman-
 * coded; else its symbols are packed LSB first. The generator fills these from
 * edgeport.mcu.compiler.storage. */
typedef struct {
    const uint8_t *values;
    const uint8_t *value_code;     /* NULL: fixed-width symbols */
    const int8_t *lut;             /* NULL: the symbols are int8 values */
    const uint8_t *gaps;           /* CSR relative indices (NULL if there are no entries) */
    const uint8_t *gap_code;       /* NULL: fixed-width relative indices */
    const uint8_t *counts;         /* NULL: dense, one symbol per weight */
    int32_t rows, cols;
    int32_t value_bits, gap_bits;  /* 1..8 */
    int32_t lut_stride;            /* 0: one table for all rows */
    int32_t count_bytes;           /* 1 or 2 */
} ep_packed_weights;

/* A weight matrix of -1/+1 (binary) or -1/0/+1 (ternary) values (ep_lowbit.c), one row per output
 * channel as in ep_packed_weights, packed along the row 32 weights per word, LSB first (weight i of
 * a row: bit i % 32 of its block i / 32, 0 past `cols`). Binary: one word per block, bit 1 = +1.
 * Ternary: two words per block, the +1 mask then the -1 mask. The generator fills these from
 * edgeport.mcu.compiler.lowbit. */
typedef struct {
    const uint32_t *bits;
    int32_t rows, cols;
    int32_t blocks;                /* ceil(cols / 32) */
    int32_t ternary;               /* 0: binary, 1: ternary */
} ep_lowbit_weights;

/* A layer whose input only takes two int8 values (the output of a sign function: SELECT_V2 between
 * two constants): `one` is coded as bit 1, the other value as bit 0 (XNOR kernels). */
typedef struct {
    int32_t one;                   /* the int8 value coded as 1 */
    int32_t step;                  /* A - B = one - other */
    int32_t other_offset;          /* B = other + input_offset */
} ep_xnor_params;

/* Comparisons of int8 tensors into bool tensors (0/1 bytes), TFLite's ComparisonWithScaling;
 * with broadcast, the output shape and each input's element strides over it. */
enum { EP_GREATER_EQUAL, EP_GREATER, EP_LESS, EP_LESS_EQUAL, EP_EQUAL, EP_NOT_EQUAL };
typedef struct {
    int32_t size, op;
    int32_t input1_offset, input1_multiplier, input1_shift;
    int32_t input2_offset, input2_multiplier, input2_shift;
    int32_t broadcast, dims;
    int32_t shape[EP_MAX_DIMS], strides1[EP_MAX_DIMS], strides2[EP_MAX_DIMS];
} ep_compare_params;

/* A comparison with a constant of one value, computed by the generator for every int8 value of the
 * other input: output = (lo <= x <= hi) XOR invert. */
typedef struct {
    int32_t size, lo, hi, invert;
} ep_compare_range_params;

/* SELECT_V2: output = condition ? x : y (int8 bytes as they are), with broadcast strides. */
typedef struct {
    int32_t size, broadcast, dims;
    int32_t shape[EP_MAX_DIMS], strides_condition[EP_MAX_DIMS], strides_x[EP_MAX_DIMS], strides_y[EP_MAX_DIMS];
} ep_select_params;

/* CONV_2D. `scratch`, 4-byte aligned, holds the DSP path's im2col columns: 4 K bytes, plus K
 * for a gathered input row unless the filter is 1x1 without padding (K = k_h * k_w * in_c);
 * grouped convolutions do not use it. `output` may be `input` for a 1x1 convolution with
 * stride 1, no padding, no groups and out_c <= in_c (each pixel is read before it is written). */
void ep_conv2d_s8(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                  const ep_channel_quant *quant, int8_t *scratch, int8_t *output);
void ep_depthwise_conv2d_s8(const ep_conv_params *p, const int8_t *input, const int8_t *filter,
                            const ep_channel_quant *quant, int8_t *output);
void ep_fully_connected_s8(const ep_fc_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
                           const uint64_t *multiplier, const int32_t *shift, const double *scale, int8_t *output);
/* The same with weights stored compressed, decoded as they are used (ep_compressed.c). The
 * convolutions decode one output channel's weights at a time into `scratch` (w->cols bytes; the
 * output must not overlap the input); FULLY_CONNECTED decodes a row into `scratch` (in_depth bytes)
 * when every weight is stored, and walks CSR rows (`scratch` unused, may be NULL). */
void ep_conv2d_packed_s8(const ep_conv_params *p, const int8_t *input, const ep_packed_weights *w,
                         const ep_channel_quant *quant, int8_t *scratch, int8_t *output);
void ep_depthwise_conv2d_packed_s8(const ep_conv_params *p, const int8_t *input, const ep_packed_weights *w,
                                   const ep_channel_quant *quant, int8_t *scratch, int8_t *output);
void ep_fully_connected_packed_s8(const ep_fc_params *p, const int8_t *input, const ep_packed_weights *w,
                                  const int32_t *bias, const uint64_t *multiplier, const int32_t *shift,
                                  const double *scale, int8_t *scratch, int8_t *output);
/* Expand a whole matrix into RAM: element (r, c) to out[r * row_stride + c * col_stride]. */
void ep_weights_decode(const ep_packed_weights *w, int8_t *out, int32_t row_stride, int32_t col_stride);
/* Binary / ternary weights, int8 inputs: add/subtract through subset-sum tables (ep_lowbit.c).
 * `scratch`, 4-byte aligned: FULLY_CONNECTED 256 bytes per block of 32 inputs; CONV_2D the same
 * per block of K = k_h * k_w * in_c inputs, plus K bytes (rounded up to 4) for the gathered window
 * unless the filter is 1x1 without padding. No groups; the output must not overlap the input. */
void ep_fully_connected_lowbit_s8(const ep_fc_params *p, const int8_t *input, const ep_lowbit_weights *w,
                                  const int32_t *bias, const uint64_t *multiplier, const int32_t *shift,
                                  const double *scale, void *scratch, int8_t *output);
void ep_conv2d_lowbit_s8(const ep_conv_params *p, const int8_t *input, const ep_lowbit_weights *w,
                         const ep_channel_quant *quant, void *scratch, int8_t *output);
/* Binary / ternary weights on two-valued inputs: XOR / AND + popcount (ep_lowbit.c). `row_constant`
 * (FC) is the bias plus the accumulator's constant part; for CONV_2D that part is in quant[].bias.
 * `scratch`, 4-byte aligned: 4 bytes per block of 32 inputs (FC), 8 bytes per block of K (conv). */
void ep_fully_connected_xnor_s8(const ep_fc_params *p, const ep_xnor_params *q, const int8_t *input,
                                const ep_lowbit_weights *w, const int32_t *row_constant, const uint64_t *multiplier,
                                const int32_t *shift, const double *scale, void *scratch, int8_t *output);
void ep_conv2d_xnor_s8(const ep_conv_params *p, const ep_xnor_params *q, const int8_t *input,
                       const ep_lowbit_weights *w, const ep_channel_quant *quant, void *scratch, int8_t *output);
void ep_compare_s8(const ep_compare_params *p, const int8_t *input1, const int8_t *input2, uint8_t *output);
void ep_compare_range_s8(const ep_compare_range_params *p, const int8_t *input, uint8_t *output);
void ep_select_s8(const ep_select_params *p, const uint8_t *condition, const int8_t *x, const int8_t *y,
                  int8_t *output);
void ep_average_pool_s8(const ep_pool_params *p, const int8_t *input, int8_t *output);
void ep_max_pool_s8(const ep_pool_params *p, const int8_t *input, int8_t *output);
void ep_mean_s8(const ep_mean_params *p, const int8_t *input, int8_t *output);
void ep_add_s8(const ep_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void ep_softmax_s8(const ep_softmax_params *p, const int8_t *input, int8_t *output);
void ep_quantize_f32_s8(const ep_affine_params *p, const float *input, int8_t *output);
void ep_dequantize_s8_f32(const ep_affine_params *p, const int8_t *input, float *output);
void ep_requantize_s8(const ep_requantize_params *p, const int8_t *input, int8_t *output);
void ep_copy_s8(int32_t size, const int8_t *input, int8_t *output);
void ep_transpose_s8(const ep_transpose_params *p, const int8_t *input, int8_t *output);
void ep_pad_s8(const ep_pad_params *p, const int8_t *input, int8_t *output);
void ep_concat_s8(const ep_concat_params *p, const int8_t *const *inputs, int8_t *output);

/* op families with their own files */
#include "ep_activation.h"
#include "ep_arith.h"
#include "ep_int16.h"
#include "ep_slicing.h"

#ifdef __cplusplus
}
#endif

#endif /* EP_KERNELS_H */
