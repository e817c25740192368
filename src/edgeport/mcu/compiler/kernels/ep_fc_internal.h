/*
 * ep_fc_internal.h: what ep_fc.c (dense weights) and ep_compressed.c (weights stored compressed)
 * share for FULLY_CONNECTED (internal to the edgeport kernels).
 */
#ifndef EP_FC_INTERNAL_H
#define EP_FC_INTERNAL_H

#include <stdint.h>

#include "ep_fixedpoint.h"
#include "ep_kernels.h"

/* acc (bias included) of output channel o -> int8: LiteRT's rescale, + output zero point, clamped. */
static inline int8_t ep_fc_output(const ep_fc_params *p, int32_t acc, int32_t o, const uint64_t *multiplier,
                                  const int32_t *shift, const double *scale)
{
    const int32_t q = p->per_channel ? o : 0;
    int64_t value;
    if (scale) { /* LiteRT's double-precision rescale (soft-float on a Cortex-M4) */
        value = (int64_t)ep_round_double_to_int32((double)acc * scale[q]) + p->output_offset;
    } else {     /* proven equal to it by the generator for every reachable acc */
        value = ep_rescale_exact(acc, multiplier[q], shift[q]) + p->output_offset;
    }
    return (int8_t)(value < p->act_min ? p->act_min : (value > p->act_max ? p->act_max : value));
}

#endif /* EP_FC_INTERNAL_H */
