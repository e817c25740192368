/*
 * ep_arith.h: int8 arith kernels (MUL, SUB, MAXIMUM, MINIMUM, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR), bit-exact with LiteRT's reference kernels.
 * Included by ep_kernels.h; implemented in ep_arith.c.
 */
#ifndef EP_ARITH_H
#define EP_ARITH_H

#include <stdint.h>

#endif /* EP_ARITH_H */
