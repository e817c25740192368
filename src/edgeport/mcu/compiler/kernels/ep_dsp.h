/*
 * ep_dsp.h: the DSP extension as the kernels use it (internal to the edgeport kernels).
 *
 * With __ARM_FEATURE_DSP (Cortex-M4/M7/M33/M55), EP_USE_DSP is defined and the ACLE intrinsics
 * come from arm_acle.h; edgeport's tests define EP_EMULATE_DSP to run the same code on a host
 * with the intrinsics written in C (ep_dsp_emulation.h, not part of generated libraries).
 */
#ifndef EP_DSP_H
#define EP_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define EP_USE_DSP 1
#elif defined(EP_EMULATE_DSP)
#include "ep_dsp_emulation.h"
#define EP_USE_DSP 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define EP_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define EP_ALWAYS_INLINE static inline
#endif

#ifdef EP_USE_DSP
/* 32-bit rotate right by 8. */
static inline uint32_t ep_ror8(uint32_t x)
{
    return (x >> 8) | (x << 24);
}

/* SXTB16 and SXTAB16 of x rotated right by 8 (bytes 1 and 3): one instruction with the ROR
 * operand, which GCC 12 does not fold from __sxtb16(ep_ror8(x)) by itself. */
static inline int16x2_t ep_sxtb16_ror8(uint32_t x)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
    int16x2_t result;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(x));
    return result;
#else
    return __sxtb16((int8x4_t)ep_ror8(x));
#endif
}

static inline int16x2_t ep_sxtab16_ror8(int16x2_t a, uint32_t x)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
    int16x2_t result;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(result) : "r"(a), "r"(x));
    return result;
#else
    return __sxtab16(a, (int8x4_t)ep_ror8(x));
#endif
}

/* One LDR/STR: Cortex-M4 and up allow unaligned words. */
static inline uint32_t ep_load4(const int8_t *p)
{
    uint32_t word;
    memcpy(&word, p, sizeof word);
    return word;
}

static inline uint32_t ep_load4_16(const int16_t *p)
{
    uint32_t word;
    memcpy(&word, p, sizeof word);
    return word;
}

static inline void ep_store4(int16_t *p, uint32_t word)
{
    memcpy(p, &word, sizeof word);
}

/* The offset in both halfwords: x_offset in [-127, 128] and x in [-128, 127], so each
 * SXTAB16 lane sum fits in [-255, 255]. */
static inline int16x2_t ep_pack_offset(int32_t offset)
{
    return (int16x2_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
}
#endif

/* sum over i < n of (x[i] + x_offset) * w[i]: 4 values per step with SXTAB16 + SMLAD. */
static inline int32_t ep_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset)
{
    int32_t acc = 0;
    int32_t i = 0;
#ifdef EP_USE_DSP
    const int16x2_t offset2 = ep_pack_offset(x_offset);
    for (; i + 4 <= n; i += 4) {
        const uint32_t xw = ep_load4(x + i);
        const uint32_t ww = ep_load4(w + i);
        acc = __smlad(__sxtab16(offset2, (int8x4_t)xw), __sxtb16((int8x4_t)ww), acc);
        acc = __smlad(ep_sxtab16_ror8(offset2, xw), ep_sxtb16_ror8(ww), acc);
    }
#endif
    for (; i < n; i++) {
        acc += ((int32_t)x[i] + x_offset) * (int32_t)w[i];
    }
    return acc;
}

#endif /* EP_DSP_H */
