/*
 * ep_pool.c: AVERAGE_POOL_2D, MAX_POOL_2D and MEAN, int8 (part of edgeport).
 *
 * Arithmetic of TFLite's reference_integer_ops::AveragePool / MaxPool (window clipped to the
 * input, average rounded half away from zero) and reference_ops::QuantizedMeanOrSum (sum,
 * minus zero point times count, requantized with 1/count folded into the multiplier).
 */
#include "ep_fixedpoint.h"
#include "ep_kernels.h"

static void ep_pool_s8(const ep_pool_params *p, const int8_t *input, int8_t *output, int32_t average)
{
    for (int32_t b = 0; b < p->batches; b++) {
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
            const int32_t fy1 = p->filter_h < p->in_h - iy0 ? p->filter_h : p->in_h - iy0;
            for (int32_t ox = 0; ox < p->out_w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
                const int32_t fx1 = p->filter_w < p->in_w - ix0 ? p->filter_w : p->in_w - ix0;
                const int32_t channels = p->channels;
                const int32_t count = fy1 > fy0 && fx1 > fx0 ? (fy1 - fy0) * (fx1 - fx0) : 0;
                const int8_t *window = input + ((b * p->in_h + iy0 + fy0) * p->in_w + ix0 + fx0) * channels;
                for (int32_t c = 0; c < channels; c++) {
                    int32_t acc = average ? 0 : INT8_MIN;
                    const int8_t *row = window + c;
                    for (int32_t fy = fy0; fy < fy1; fy++, row += p->in_w * channels) {
                        const int8_t *x = row;
                        for (int32_t fx = fx0; fx < fx1; fx++, x += channels) {
                            const int32_t v = *x;
                            if (average) {
                                acc += v;
                            } else if (v > acc) {
                                acc = v;
                            }
                        }
                    }
                    if (average && count > 0) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    *output++ = (int8_t)ep_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void ep_average_pool_s8(const ep_pool_params *p, const int8_t *input, int8_t *output)
{
    ep_pool_s8(p, input, output, 1);
}

void ep_max_pool_s8(const ep_pool_params *p, const int8_t *input, int8_t *output)
{
    ep_pool_s8(p, input, output, 0);
}

void ep_mean_s8(const ep_mean_params *p, const int8_t *input, int8_t *output)
{
    int32_t outputs = 1;
    for (int32_t d = 0; d < p->kept_dims; d++) {
        outputs *= p->kept_shape[d];
    }
    for (int32_t o = 0; o < outputs; o++) {
        const int8_t *base = input + ep_strided_offset(o, p->kept_dims, p->kept_shape, p->kept_strides);
        int32_t sum = 0;
        for (int32_t r = 0; r < p->count; r++) {
            sum += base[ep_strided_offset(r, p->reduced_dims, p->reduced_shape, p->reduced_strides)];
        }
        sum -= p->input_zero_point * p->count;
        const int32_t value = ep_multiply_by_quantized_multiplier(sum, p->multiplier, p->shift) + p->output_zero_point;
        output[o] = (int8_t)ep_clamp(value, INT8_MIN, INT8_MAX);
    }
}
