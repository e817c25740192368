/*
 * ep_elementwise.c: ADD, SOFTMAX, QUANTIZE, DEQUANTIZE, int8 (part of edgeport).
 *
 * ADD: TFLite's reference_integer_ops::Add (inputs shifted left by left_shift = 20, each
 * rescaled, summed, rescaled to the output). SOFTMAX: reference_ops::Softmax for int8, the
 * gemmlowp fixed-point exp on Q5.26 differences and a Newton-Raphson reciprocal (this is what
 * LiteRT's reference kernels run; the optimized kernels use a lookup table instead).
 * QUANTIZE / DEQUANTIZE: reference_ops::AffineQuantize / Dequantize in float32.
 */
#include "ep_fixedpoint.h"
#include "ep_kernels.h"

static inline int8_t ep_add_one(const ep_add_params *p, int32_t a, int32_t b)
{
    const int32_t shifted1 = (a + p->input1_offset) * (1 << p->left_shift);
    const int32_t shifted2 = (b + p->input2_offset) * (1 << p->left_shift);
    const int32_t scaled1 = ep_multiply_by_quantized_multiplier(shifted1, p->input1_multiplier, p->input1_shift);
    const int32_t scaled2 = ep_multiply_by_quantized_multiplier(shifted2, p->input2_multiplier, p->input2_shift);
    const int32_t sum = scaled1 + scaled2;
    const int32_t out = ep_multiply_by_quantized_multiplier(sum, p->output_multiplier, p->output_shift) +
                        p->output_offset;
    return (int8_t)ep_clamp(out, p->act_min, p->act_max);
}

void ep_add_s8(const ep_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        if (p->broadcast) {
            const int32_t a = input1[ep_strided_offset(i, p->dims, p->shape, p->strides1)];
            const int32_t b = input2[ep_strided_offset(i, p->dims, p->shape, p->strides2)];
            output[i] = ep_add_one(p, a, b);
        } else {
            output[i] = ep_add_one(p, input1[i], input2[i]);
        }
    }
}

/* ---- gemmlowp fixed point, as used by TFLite's int8 reference softmax ---- */

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8. */
static int32_t ep_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;    /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = a + (1 << 28);             /* a + 1/8 */
    const int32_t x2 = ep_srdhm(x, x);
    const int32_t x3 = ep_srdhm(x2, x);
    const int32_t x4 = ep_srdhm(x2, x2);
    const int32_t x4_over_4 = ep_rounding_divide_by_pot(x4, 2);
    const int32_t poly = ep_rounding_divide_by_pot(ep_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + ep_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 in Q5.26, result in Q0.31 (gemmlowp exp_on_negative_values). */
static int32_t ep_exp_on_negative_values(int32_t a)
{
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24;
    const int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    int32_t result = ep_exp_on_interval_between_negative_one_quarter_and_0_excl(
        ep_saturating_shift_left(a_mod_quarter_minus_one_quarter, 5));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    for (int32_t k = 0; k < 7; k++) {  /* exp(-1/4), exp(-1/2), exp(-1), ..., exp(-16) */
        if (remainder & (1 << (24 + k))) {
            result = ep_srdhm(result, multipliers[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp RoundingHalfSum. */
static int32_t ep_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out: three Newton-Raphson steps in Q2.29. */
static int32_t ep_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t half_denominator = ep_rounding_half_sum(a, INT32_MAX);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    int32_t x = constant_48_over_17 + ep_srdhm(half_denominator, constant_neg_32_over_17);
    for (int32_t i = 0; i < 3; i++) {
        const int32_t one_minus_half_denominator_times_x = (1 << 29) - ep_srdhm(half_denominator, x);
        x = x + ep_saturating_shift_left(ep_srdhm(x, one_minus_half_denominator_times_x), 2);
    }
    return ep_saturating_shift_left(x, 1);
}

static int32_t ep_count_leading_zeros(uint32_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return x ? (int32_t)__builtin_clz(x) : 32;
#else
    int32_t n = 0;
    while (n < 32 && !(x & 0x80000000u)) {
        x <<= 1;
        n++;
    }
    return n;
#endif
}

void ep_softmax_s8(const ep_softmax_params *p, const int8_t *input, int8_t *output)
{
    for (int32_t i = 0; i < p->outer; i++) {
        const int8_t *in = input + i * p->depth;
        int8_t *out = output + i * p->depth;
        int32_t max_in_row = INT8_MIN;
        for (int32_t c = 0; c < p->depth; c++) {
            max_in_row = in[c] > max_in_row ? in[c] : max_in_row;
        }
        int32_t sum_of_exps = 0;  /* Q12.19 */
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t diff = in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = ep_multiply_by_quantized_multiplier(diff, p->input_multiplier,
                                                                           p->input_left_shift);
                sum_of_exps += ep_rounding_divide_by_pot(ep_exp_on_negative_values(scaled), 12);
            }
        }
        /* GetReciprocal(sum_of_exps, 12 integer bits) */
        const int32_t headroom_plus_one = ep_count_leading_zeros((uint32_t)sum_of_exps);
        const int32_t num_bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t shifted_scale = ep_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t diff = in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = ep_multiply_by_quantized_multiplier(diff, p->input_multiplier,
                                                                           p->input_left_shift);
                const int32_t exp_in_0 = ep_exp_on_negative_values(scaled);
                const int32_t unsat = ep_rounding_divide_by_pot(ep_srdhm(shifted_scale, exp_in_0),
                                                                num_bits_over_unit + 31 - 8);
                out[c] = (int8_t)ep_clamp(unsat + INT8_MIN, INT8_MIN, INT8_MAX);
            } else {
                out[c] = INT8_MIN;
            }
        }
    }
}

void ep_quantize_f32_s8(const ep_affine_params *p, const float *input, int8_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        const int32_t q = ep_round_float_to_int32(input[i] / p->scale);  /* float division, as TFLite */
        /* q + zero point without int32 overflow at the saturated ends; |q| >= 512 saturates anyway */
        output[i] = (int8_t)ep_clamp(ep_clamp(q, -512, 512) + p->zero_point, INT8_MIN, INT8_MAX);
    }
}

void ep_dequantize_s8_f32(const ep_affine_params *p, const int8_t *input, float *output)
{
    /* one rounding of the exact product, as TFLite's double product cast to float */
    for (int32_t i = 0; i < p->size; i++) {
        output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    }
}

void ep_requantize_s8(const ep_requantize_params *p, const int8_t *input, int8_t *output)
{
    for (int32_t i = 0; i < p->size; i++) {
        const int32_t value = ep_multiply_by_quantized_multiplier((int32_t)input[i] - p->input_zero_point,
                                                                  p->multiplier, p->shift) +
                              p->output_zero_point;
        output[i] = (int8_t)ep_clamp(value, INT8_MIN, INT8_MAX);
    }
}
