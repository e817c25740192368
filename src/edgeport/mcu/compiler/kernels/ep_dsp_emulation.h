/*
 * ep_dsp_emulation.h: the Arm ACLE DSP intrinsics the kernels use, in plain C (part of
 * edgeport's tests, not of generated libraries). Compiling the kernels on a host with
 * -DEP_EMULATE_DSP runs their __ARM_FEATURE_DSP code path, so tests can show it computes the
 * same bytes as the plain path without an Arm CPU.
 */
#ifndef EP_DSP_EMULATION_H
#define EP_DSP_EMULATION_H

#include <stdint.h>

typedef int32_t int16x2_t;
typedef int32_t int8x4_t;

static inline int32_t ep_lane16(int32_t x, int32_t hi)
{
    return (int16_t)(uint16_t)((uint32_t)x >> (hi ? 16 : 0));
}

static inline int32_t ep_lane8(int32_t x, int32_t hi)
{
    return (int8_t)(uint8_t)((uint32_t)x >> (hi ? 16 : 0));
}

static inline int16x2_t ep_pack16(int32_t lo, int32_t hi)
{
    return (int16x2_t)(((uint32_t)(uint16_t)hi << 16) | (uint16_t)lo);
}

/* SXTAB16: a's halfwords plus the sign-extended bytes 0 and 2 of x */
static inline int16x2_t __sxtab16(int16x2_t a, int8x4_t x)
{
    return ep_pack16(ep_lane16(a, 0) + ep_lane8(x, 0), ep_lane16(a, 1) + ep_lane8(x, 1));
}

/* SXTB16: bytes 0 and 2 of x, sign-extended to halfwords */
static inline int16x2_t __sxtb16(int8x4_t x)
{
    return ep_pack16(ep_lane8(x, 0), ep_lane8(x, 1));
}

/* SMLAD: acc + lo(a) * lo(b) + hi(a) * hi(b), wrapping */
static inline int32_t __smlad(int16x2_t a, int16x2_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(ep_lane16(a, 0) * ep_lane16(b, 0)) +
                     (uint32_t)(ep_lane16(a, 1) * ep_lane16(b, 1)));
}

/* SMLABB / SMLATT: acc + bottom * bottom, acc + top * top */
static inline int32_t __smlabb(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(ep_lane16(a, 0) * ep_lane16(b, 0)));
}

static inline int32_t __smlatt(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(ep_lane16(a, 1) * ep_lane16(b, 1)));
}

/* SSAT: x saturated to a signed `bits`-bit value (1 <= bits <= 32) */
static inline int32_t __ssat(int32_t x, uint32_t bits)
{
    const int64_t hi = ((int64_t)1 << (bits - 1)) - 1;
    return (int32_t)(x > hi ? hi : (x < -hi - 1 ? -hi - 1 : x));
}

#endif /* EP_DSP_EMULATION_H */
