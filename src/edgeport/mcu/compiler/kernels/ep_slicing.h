/*
 * ep_slicing.h: int8 slicing kernels (STRIDED_SLICE, SPLIT, GATHER), bit-exact with LiteRT's reference kernels.
 * Included by ep_kernels.h; implemented in ep_slicing.c.
 */
#ifndef EP_SLICING_H
#define EP_SLICING_H

#include <stdint.h>

#endif /* EP_SLICING_H */
